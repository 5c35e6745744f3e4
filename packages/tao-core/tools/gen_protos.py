"""Regenerate the committed `*_pb2.py` modules from the `.proto` files under tao_core/proto.

Usage (from the repository root, in the tao-core venv):

    pip install grpcio-tools==1.84.0      # dev tool only; bundles protoc 35.1 (gencode 7.35.1)
    python packages/tao-core/tools/gen_protos.py           # rewrite the *_pb2.py files in place
    python packages/tao-core/tools/gen_protos.py --check   # exit 1 if they are out of date

The pin matters: a generated module refuses to import under a protobuf runtime older than the
protoc that wrote it, and another protoc writes different bytes. grpcio-tools 1.84.0 requires
protobuf>=7.35.1,<8, so it installs beside the runtime tao-core uses without changing it.
Output is byte-identical across runs and machines: protoc is given the files sorted, with paths
relative to one include root (`src/`), so nothing machine-specific reaches the output.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

GRPCIO_TOOLS_VERSION = "1.84.0"
SRC = Path(__file__).resolve().parents[1] / "src"
PROTO_ROOT = SRC / "tao_core" / "proto"


def proto_files() -> list[Path]:
    """Every .proto under tao_core/proto, relative to the include root, sorted."""
    return sorted(p.relative_to(SRC) for p in PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc over all protos, writing `<out_dir>/tao_core/proto/.../*_pb2.py`; return them."""
    from grpc_tools import protoc  # imported here so --help works without grpcio-tools

    out_dir.mkdir(parents=True, exist_ok=True)
    files = proto_files()
    args = ["protoc", f"--proto_path={SRC}", f"--python_out={out_dir}"]
    # Absolute paths inside --proto_path are mapped back to their relative names by protoc.
    rc = protoc.main(args + [str(SRC / f) for f in files])
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    return [out_dir / f.with_name(f.stem + "_pb2.py") for f in files]


def stale_files() -> list[Path]:
    """Committed pb2 modules that differ from a fresh generation (or are missing)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = []
        for f in fresh:
            committed = SRC / f.relative_to(tmp)
            if not committed.exists() or not filecmp.cmp(f, committed, shallow=False):
                stale.append(committed)
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for f in stale:
            print(f"out of date: {f}")
        return 1 if stale else 0
    for f in generate(SRC):
        print(f"wrote {f.relative_to(SRC)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
