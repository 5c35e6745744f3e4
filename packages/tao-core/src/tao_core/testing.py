"""Locating the project's small real datasets, for tests and benchmarks of every package.

Search order: $TAO_SHARED_DATA, then `shared/data` beside the checkout (where CI puts it), then
`shared/data` inside it, then the demo copies under `examples/data`.
"""

import os
from pathlib import Path


def data_roots(repo: str | os.PathLike) -> list[Path]:
    """The folders that may hold datasets, in search order, for the checkout at `repo`."""
    repo = Path(repo)
    env = os.environ.get("TAO_SHARED_DATA")
    roots = [Path(env)] if env else []
    return roots + [repo.parent / "shared" / "data", repo / "shared" / "data", repo / "examples" / "data"]


def find_shared_data(repo: str | os.PathLike) -> Path | None:
    """The first existing shared/data folder (not the examples copy), or None."""
    return next((r for r in data_roots(repo)[:-1] if r.is_dir()), None)


def find_dataset(name: str, repo: str | os.PathLike, marker: str = "annotations/instances_val.json") -> Path | None:
    """`<root>/<name>` of the first root where `marker` exists inside it, or None."""
    return next((r / name for r in data_roots(repo) if (r / name / marker).exists()), None)
