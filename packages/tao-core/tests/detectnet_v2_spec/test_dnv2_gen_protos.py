"""The committed *_pb2.py modules are exactly what tools/gen_protos.py generates."""

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "gen_protos.py"


def _tool():
    spec = importlib.util.spec_from_file_location("gen_protos", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_proto_has_a_committed_module():
    tool = _tool()
    for proto in tool.proto_files():
        assert (tool.SRC / proto.with_name(proto.stem + "_pb2.py")).is_file(), proto


def test_regeneration_is_byte_identical(tmp_path):
    pytest.importorskip(
        "grpc_tools", reason="grpcio-tools (dev tool) is not installed; pip install grpcio-tools==1.84.0"
    )
    tool = _tool()
    fresh = tool.generate(tmp_path)
    assert fresh, "no .proto files found"
    for f in fresh:
        committed = tool.SRC / f.relative_to(tmp_path)
        assert committed.read_bytes() == f.read_bytes(), f"{committed} is stale: run {TOOL}"
    assert tool.stale_files() == []
