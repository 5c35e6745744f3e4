"""The output rule of every task that writes a set of files into a folder (inference, evaluate):
a new run replaces the previous run's outputs as a whole, never a mix of the two.

    with replace_outputs(out_dir) as staging:
        ...write every output under `staging`...

The new set is written into a hidden staging folder inside `out_dir`; only once the block
finishes is it swapped in: the previous run's entries (listed in `out_dir/.tao-outputs.json`,
or any entry the new set also names) go to a trash folder, the new entries are renamed into
place, the manifest last, the trash is deleted. A failure inside the block deletes the staging
folder and leaves the previous set untouched. A kill during the swap (a few renames) is
finished at the next start (`recover_outputs`): a complete new set is rolled forward, an
incomplete one is deleted, so what a reader finds is one run's set.

Files the user names one by one (export.onnx_file, gen_trt_engine.trt_engine) follow the other
half of the rule: an existing file is refused, never replaced (see `refuse_existing`).
Run records (status.json, the log, experiment.yaml) are not outputs: they accumulate.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from tao_core.errors import TaoUserError
from tao_core.io.atomic import _HOST, atomic_write_text, fsync_dir, pid_alive

MANIFEST = ".tao-outputs.json"
_DIR_RE = re.compile(r"^\.tao-(?P<kind>staging|complete|old)-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]+$")


def _work_dir(out_dir: Path, kind: str) -> Path:
    return out_dir / f".tao-{kind}-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def _read_manifest(path: Path) -> list[str]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("entries", [])
    except (OSError, ValueError, AttributeError):
        return []
    # a manifest only ever names entries of its own folder
    return [e for e in entries if isinstance(e, str) and e and "/" not in e and e not in (".", "..")]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _install(complete: Path, out_dir: Path) -> None:
    """Swap the complete new set in `complete` into `out_dir` (idempotent, so recovery can redo it).

    Step A (old manifest present): list what goes, move it to a trash folder, drop the manifest.
    Step B (old manifest gone): move the new entries in, the new manifest last.
    """
    old_manifest = out_dir / MANIFEST
    new_entries = [p.name for p in complete.iterdir() if p.name != MANIFEST]
    if old_manifest.exists() or any((out_dir / n).exists() or (out_dir / n).is_symlink() for n in new_entries):
        going = sorted(set(_read_manifest(old_manifest)) | {n for n in new_entries if os.path.lexists(out_dir / n)})
        atomic_write_text(old_manifest, json.dumps({"entries": going}))  # exact list, for a redo after a kill
        trash = _work_dir(out_dir, "old")
        trash.mkdir()
        for name in going:
            if os.path.lexists(out_dir / name):
                os.replace(out_dir / name, trash / name)
        old_manifest.unlink()
        fsync_dir(out_dir)
    else:
        trash = None
    for name in new_entries:
        os.replace(complete / name, out_dir / name)
    if (complete / MANIFEST).exists():
        os.replace(complete / MANIFEST, out_dir / MANIFEST)
    fsync_dir(out_dir)
    shutil.rmtree(complete, ignore_errors=True)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def recover_outputs(out_dir: str | os.PathLike) -> None:
    """Finish what a killed run left in `out_dir`: roll a complete set forward, delete staging and
    trash folders of processes (of this host) that no longer run."""
    out = Path(out_dir)
    if not out.is_dir():
        return
    found = []
    for entry in out.iterdir():
        m = _DIR_RE.match(entry.name)
        if m and m["host"] == _HOST and not pid_alive(int(m["pid"])) and int(m["pid"]) != os.getpid():
            found.append((m["kind"], entry))
    for kind, entry in sorted(found, key=lambda ke: ke[0] != "complete"):
        if kind == "complete":
            _install(entry, out)
        else:
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def replace_outputs(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder; on success its content replaces the previous output set of
    `out_dir` as a whole (see the module docstring); on an exception it is deleted."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recover_outputs(out)
    staging = _work_dir(out, "staging")
    staging.mkdir()
    try:
        yield staging
        entries = sorted(p.name for p in staging.iterdir())
        atomic_write_text(staging / MANIFEST, json.dumps({"entries": entries}))
        complete = _work_dir(out, "complete")
        os.replace(staging, complete)  # from here on the new set is complete: a kill rolls it forward
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _install(complete, out)


def refuse_existing(path: str | os.PathLike, field: str) -> None:
    """A file output the user names is never replaced: an existing one is a TaoUserError."""
    if os.path.lexists(path):
        kind = "a folder" if os.path.isdir(path) else "a file"
        raise TaoUserError(
            f"{field}: {path} already exists ({kind}); refusing to overwrite it: remove it or choose another path"
        )
