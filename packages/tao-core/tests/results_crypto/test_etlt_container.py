"""The .etlt container: int32-LE name length, name, encrypted ONNX payload."""

import struct

import pytest

from tao_core.crypto import CorruptFileError, WrongKeyError, is_encrypted
from tao_core.errors import TaoUserError
from tao_core.etlt import read_etlt, write_etlt

KEY = "tlt_encode"
ONNX = b"\x08\x08\x12\x07pytorch" + bytes(range(256)) * 8


@pytest.fixture(scope="module")
def etlt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("etlt") / "model.etlt"
    write_etlt(path, ONNX, "inputs", KEY)
    return path


def test_round_trip_and_layout(etlt_file):
    raw = etlt_file.read_bytes()
    assert struct.unpack_from("<i", raw) == (6,) and raw[4:10] == b"inputs"
    assert is_encrypted(raw[10:])
    assert read_etlt(etlt_file, KEY) == ("inputs", ONNX)


def test_empty_name_like_taos_onnx_exports(tmp_path):
    path = tmp_path / "m.etlt"
    write_etlt(path, ONNX, "", KEY)
    assert path.read_bytes()[:4] == b"\0\0\0\0"
    assert read_etlt(path, KEY) == ("", ONNX)


def test_utf8_name(tmp_path):
    path = tmp_path / "m.etlt"
    write_etlt(path, b"x", "entrée", KEY)
    assert read_etlt(path, KEY) == ("entrée", b"x")


def test_wrong_key(etlt_file):
    with pytest.raises(WrongKeyError, match="model.etlt"):
        read_etlt(etlt_file, "nvidia_tlt")


def write_raw(tmp_path, data):
    path = tmp_path / "bad.etlt"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("data", [b"", b"\x01\x00"])
def test_too_short(tmp_path, data):
    with pytest.raises(CorruptFileError, match="too short"):
        read_etlt(write_raw(tmp_path, data), KEY)


@pytest.mark.parametrize("length", [1000, -1, 2**31 - 1])
def test_name_length_beyond_file(tmp_path, length):
    with pytest.raises(CorruptFileError, match="does not fit"):
        read_etlt(write_raw(tmp_path, struct.pack("<i", length) + b"inputs"), KEY)


def test_corrupt_payload(tmp_path, etlt_file):
    raw = bytearray(etlt_file.read_bytes())
    raw[-20] ^= 0x80
    with pytest.raises(CorruptFileError, match="integrity"):
        read_etlt(write_raw(tmp_path, bytes(raw)), KEY)


def test_truncated_payload(tmp_path, etlt_file):
    with pytest.raises(CorruptFileError, match="truncated"):
        read_etlt(write_raw(tmp_path, etlt_file.read_bytes()[:-100]), KEY)
    with pytest.raises(CorruptFileError, match="truncated"):
        read_etlt(write_raw(tmp_path, etlt_file.read_bytes()[:10]), KEY)  # name only, no payload


def test_foreign_payload_explained(tmp_path):
    # An NVIDIA-made file: name header then an AES-CTR stream starting with a raw nonce.
    with pytest.raises(CorruptFileError, match="closed codec"):
        read_etlt(write_raw(tmp_path, struct.pack("<i", 0) + bytes(range(64))), KEY)


def test_non_utf8_name(tmp_path):
    with pytest.raises(CorruptFileError, match="UTF-8"):
        read_etlt(write_raw(tmp_path, struct.pack("<i", 2) + b"\xff\xfe" + b"TAOENC"), KEY)


def test_missing_file(tmp_path):
    with pytest.raises(TaoUserError, match="not found"):
        read_etlt(tmp_path / "nope.etlt", KEY)
