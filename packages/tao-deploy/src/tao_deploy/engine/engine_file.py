"""The self-describing engine file.

Layout (integers little-endian), format version 1::

    offset  size  field
         0     8  magic b"TAOENGIN"
         8     2  format version (1)
        10     4  metadata length M
        14     M  metadata: UTF-8 JSON object
      14+M     -  payload: the prepared ONNX (onnxruntime) or the serialized plan (tensorrt)

The metadata holds `payload_bytes` and `payload_sha256`, so a truncated or damaged file is
reported as such instead of failing inside a runtime. Other keys: format, backend,
backend_version, precision, inputs [{name, shape, dtype}], outputs, class_names, profile
{input: {min, opt, max}}, tao_deploy_version, created (UTC ISO-8601), plus the caller's extras.

Writes are atomic (temporary file, fsync, rename): an interrupted build leaves the previous
engine, or nothing, at the destination, never a partial file.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import BinaryIO

from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write

MAGIC = b"TAOENGIN"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sHI")
_MAX_METADATA = 16 * 2**20


def write_engine(path: str | os.PathLike, metadata: dict, payload: bytes | memoryview) -> None:
    meta = dict(metadata, payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    blob = json.dumps(meta, sort_keys=True).encode("utf-8")
    with atomic_write(path, "wb") as f:
        f.write(_HEAD.pack(MAGIC, FORMAT_VERSION, len(blob)))
        f.write(blob)
        _write_payload(f, payload)


def _write_payload(f: BinaryIO, payload, chunk: int = 64 * 2**20) -> None:
    view = memoryview(payload)
    for start in range(0, len(view), chunk):
        f.write(view[start : start + chunk])


def read_metadata(path: str | os.PathLike) -> dict:
    """Only the header: cheap, for inspecting an engine without loading it."""
    with _open(path) as f:
        return _read_header(f, path)


def read_engine(path: str | os.PathLike) -> tuple[dict, bytes]:
    with _open(path) as f:
        meta = _read_header(f, path)
        payload = f.read()
    size = meta.get("payload_bytes")
    if len(payload) != size:
        raise TaoUserError(
            f"{path}: engine file is truncated or has trailing bytes ({len(payload)} payload bytes, expected {size})"
        )
    if hashlib.sha256(payload).hexdigest() != meta.get("payload_sha256"):
        raise TaoUserError(f"{path}: engine file is corrupt (payload checksum mismatch); rebuild it")
    return meta, payload


def _open(path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise TaoUserError(f"{path}: engine file not found") from None


def _read_header(f: BinaryIO, path) -> dict:
    head = f.read(_HEAD.size)
    if len(head) < _HEAD.size or not head.startswith(MAGIC):
        raise TaoUserError(
            f"{path}: not a tao-deploy engine file (no {MAGIC.decode()} header). Engines are built with "
            "tao-deploy gen_trt_engine or tao-converter; a raw TensorRT plan from trtexec cannot carry the "
            "metadata this loader needs"
        )
    _, version, size = _HEAD.unpack(head)
    if version != FORMAT_VERSION:
        raise TaoUserError(
            f"{path}: engine file format version {version}; this tao-deploy reads version {FORMAT_VERSION} "
            "(rebuild the engine with this tao-deploy)"
        )
    if size > _MAX_METADATA:
        raise TaoUserError(f"{path}: engine file is corrupt (metadata length {size})")
    raw = f.read(size)
    try:
        meta = json.loads(raw.decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError
    except ValueError:
        raise TaoUserError(f"{path}: engine file is corrupt (metadata is not a JSON object)") from None
    return meta


def engine_path_is_writable(path: str | os.PathLike) -> None:
    """Fail early (before a long build) when the engine cannot be written where asked."""
    parent = Path(path).resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise TaoUserError(f"cannot write the engine to {path}: {probe} is not writable")
    if Path(path).is_dir():
        raise TaoUserError(f"cannot write the engine to {path}: it is a directory")
