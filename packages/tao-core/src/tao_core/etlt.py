"""TAO's `.etlt` container around an encrypted model.

Layout, as TAO's deploy tools read and write it::

    int32 little-endian  N       length of the input-node name in bytes
    N bytes              name    input-node name, UTF-8
    rest                 payload the encrypted model

In TAO, N > 0 marked a legacy UFF payload and N == 0 an ONNX one (the PyTorch exporters write
N = 0). Here the payload is always ONNX encrypted with `tao_core.crypto`; pass
`input_name=""` to write files laid out exactly like TAO's ONNX exports. NVIDIA-made `.etlt`
files use NVIDIA's closed codec and are reported as not readable, not as a wrong key.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from tao_core.crypto import CorruptFileError, decrypt_bytes, encrypt_bytes, is_encrypted
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_bytes

_LEN = struct.Struct("<i")


def encode_etlt(onnx_bytes: bytes, input_name: str, key: str | bytes) -> bytes:
    name = input_name.encode("utf-8")
    return _LEN.pack(len(name)) + name + encrypt_bytes(onnx_bytes, key)


def decode_etlt(blob: bytes, key: str | bytes, source: str | os.PathLike | None = None) -> tuple[str, bytes]:
    """(input_name, onnx_bytes) from an `.etlt` blob; `source` is named in errors."""
    where = f"{source}: " if source else ""
    if len(blob) < _LEN.size:
        raise CorruptFileError(f"{where}not a valid .etlt file: {len(blob)} bytes is too short for a header")
    (name_len,) = _LEN.unpack_from(blob)
    if name_len < 0 or _LEN.size + name_len > len(blob):
        raise CorruptFileError(
            f"{where}not a valid .etlt file: input-name length {name_len} does not fit in a {len(blob)}-byte file"
        )
    try:
        name = blob[_LEN.size : _LEN.size + name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptFileError(f"{where}not a valid .etlt file: input-node name is not UTF-8") from None
    payload = blob[_LEN.size + name_len :]
    if payload and not is_encrypted(payload):
        raise CorruptFileError(
            f"{where}the .etlt payload is not in tao-core's encryption format; files encrypted by "
            "NVIDIA TAO use a closed codec and cannot be read here (export a plain .onnx instead)"
        )
    return name, decrypt_bytes(payload, key, source=source)


def write_etlt(path: str | os.PathLike, onnx_bytes: bytes, input_name: str, key: str | bytes) -> None:
    """Write an `.etlt` atomically (the old file stays until the new one is complete)."""
    atomic_write_bytes(path, encode_etlt(onnx_bytes, input_name, key))


def read_etlt(path: str | os.PathLike, key: str | bytes) -> tuple[str, bytes]:
    """Read an `.etlt` file; returns (input_name, onnx_bytes)."""
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError:
        raise TaoUserError(f"{path}: file not found") from None
    return decode_etlt(blob, key, source=path)
