"""Reading the exported model: plain .onnx, encrypted .etlt, or bytes; and describing its I/O.

Every failure here is a `TaoUserError` raised before any building starts: a missing file, an
encrypted model without a key, a wrong key (from tao_core.crypto), bytes that are not ONNX.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import helper

from tao_core.crypto import decrypt_bytes, is_encrypted
from tao_core.errors import TaoUserError
from tao_core.etlt import decode_etlt

ModelSource = str | os.PathLike | bytes | onnx.ModelProto


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: dims are ints, or a string / None for a dynamic dim."""

    name: str
    shape: tuple
    dtype: str  # numpy dtype name, e.g. "float32"

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def static_dim(dim) -> int | None:
    """A fixed (positive integer) ONNX dimension, or None for a symbolic / unknown one."""
    return dim if isinstance(dim, int) and dim > 0 else None


def load_onnx(source: ModelSource, key: str | bytes | None = None) -> onnx.ModelProto:
    """The ONNX model from a path (.onnx or encrypted .etlt), raw bytes, or a ModelProto."""
    if isinstance(source, onnx.ModelProto):
        return source
    where = "<bytes>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        blob = bytes(source)
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise TaoUserError(f"{path}: model file not found")
        blob = path.read_bytes()
    blob = _decrypt_if_needed(blob, key, where)
    try:
        model = onnx.load_model_from_string(blob)
    except Exception as e:  # protobuf raises DecodeError; any failure means "not ONNX"
        raise TaoUserError(f"{where}: not a valid ONNX model ({e.__class__.__name__})") from None
    if not model.graph.node:
        raise TaoUserError(f"{where}: not a valid ONNX model (the graph has no nodes)")
    return model


def _decrypt_if_needed(blob: bytes, key, where: str) -> bytes:
    if is_encrypted(blob):  # a bare tao_core.crypto file
        _require_key(key, where)
        return decrypt_bytes(blob, key, source=where)
    if where.endswith(".etlt"):
        _require_key(key, where)
        return decode_etlt(blob, key, source=where)[1]
    return blob


def _require_key(key, where: str) -> None:
    if key is None or key == "" or key == b"":
        raise TaoUserError(f"{where}: the model is encrypted; pass its key (-k KEY / key=...)")


def input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Real graph inputs (older exporters also list initializers as inputs; those are skipped)."""
    inits = {i.name for i in model.graph.initializer}
    return [_spec(v) for v in model.graph.input if v.name not in inits]


def output_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    return [_spec(v) for v in model.graph.output]


def _spec(value_info) -> TensorSpec:
    t = value_info.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
    dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "float32"
    return TensorSpec(value_info.name, dims, dtype)


def select_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Keep only the named graph outputs, in the given order (tao-converter's -o).

    A name that is not a graph output is an error naming what the graph does output: silently
    building an engine without the tensors DeepStream asks for would fail much later.
    """
    outputs = {o.name: o for o in model.graph.output}
    missing = [n for n in names if n not in outputs]
    if missing:
        raise TaoUserError(f"output(s) {missing} are not outputs of the model; it outputs {list(outputs)}")
    if list(outputs) == list(names):
        return model
    import onnx_graphsurgeon as gs  # only needed for this rarer path

    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    graph.outputs = [tensors[n] for n in names]
    graph.cleanup()  # drops the nodes that only fed the removed outputs
    return gs.export_onnx(graph)
