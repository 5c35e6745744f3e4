"""Model encryption: round trip, and wrong key vs corruption as two different errors."""

import os
import struct

import pytest

from tao_core import crypto
from tao_core.crypto import (
    HEADER_LEN,
    CorruptFileError,
    EmptyKeyError,
    WrongKeyError,
    decrypt_bytes,
    decrypt_file,
    encrypt_bytes,
    encrypt_file,
    is_encrypted,
)
from tao_core.errors import TaoUserError

KEY = "nvidia_tlt"
DATA = os.urandom(3000) + b"onnx-ish tail"


@pytest.fixture(scope="module")
def blob():
    return encrypt_bytes(DATA, KEY)


def test_round_trip(blob):
    assert decrypt_bytes(blob, KEY) == DATA
    assert decrypt_bytes(blob, KEY.encode()) == DATA  # str and bytes keys are the same key
    assert blob[:7] == b"TAOENC\x01" and len(blob) == HEADER_LEN + len(DATA) + 16
    assert DATA[:64] not in blob


def test_empty_plaintext_round_trip():
    assert decrypt_bytes(encrypt_bytes(b"", KEY), KEY) == b""


def test_fresh_salt_and_nonce_each_time():
    a, b = encrypt_bytes(DATA, KEY), encrypt_bytes(DATA, KEY)
    assert a != b and a[11:39] != b[11:39]


def test_errors_are_user_errors():
    for cls in (WrongKeyError, CorruptFileError, EmptyKeyError):
        assert issubclass(cls, TaoUserError)
    assert not issubclass(WrongKeyError, CorruptFileError) and not issubclass(CorruptFileError, WrongKeyError)


def test_wrong_key(blob):
    with pytest.raises(WrongKeyError, match="wrong key"):
        decrypt_bytes(blob, "not_the_key")


@pytest.mark.parametrize("key", ["", b""])
def test_empty_key_rejected(blob, key):
    with pytest.raises(EmptyKeyError, match="empty"):
        encrypt_bytes(DATA, key)
    with pytest.raises(EmptyKeyError):
        decrypt_bytes(blob, key)


def flip(blob, index):
    out = bytearray(blob)
    out[index] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("where", ["ciphertext_start", "ciphertext_mid", "tag"])
def test_flipped_payload_byte_is_corruption(blob, where):
    index = {"ciphertext_start": HEADER_LEN, "ciphertext_mid": HEADER_LEN + 1500, "tag": len(blob) - 1}[where]
    with pytest.raises(CorruptFileError, match="integrity"):
        decrypt_bytes(flip(blob, index), KEY)


@pytest.mark.parametrize("index", [7, 8, 12, 30, 40, 50, 63, 70])
def test_flipped_header_byte_is_corruption_not_wrong_key(blob, index):
    # Salt, nonce, length, key check and checksum: all caught by the header checksum.
    with pytest.raises(CorruptFileError):
        decrypt_bytes(flip(blob, index), KEY)


def test_forged_header_with_fixed_checksum_still_fails(blob):
    # Changing the nonce and recomputing the checksum passes the header check; GCM binds the
    # header as associated data, so the tag still fails (with the right key: corruption).
    import hashlib

    head = bytearray(blob[:63])
    head[30] ^= 0xFF
    forged = bytes(head) + hashlib.sha256(head).digest()[:8] + blob[HEADER_LEN:]
    with pytest.raises(CorruptFileError, match="integrity"):
        decrypt_bytes(forged, KEY)


@pytest.mark.parametrize("keep", [0, 3, 6, 7, 40, HEADER_LEN, HEADER_LEN + 100, -1])
def test_truncated_is_corruption(blob, keep):
    cut = blob[:keep] if keep >= 0 else blob[:-1]
    with pytest.raises(CorruptFileError, match="truncated"):
        decrypt_bytes(cut, KEY)


def test_trailing_garbage_is_corruption(blob):
    with pytest.raises(CorruptFileError, match="trailing"):
        decrypt_bytes(blob + b"\0", KEY)


def test_unknown_version_is_corruption(blob):
    future = blob[:6] + bytes([2]) + blob[7:]
    with pytest.raises(CorruptFileError, match="version 2"):
        decrypt_bytes(future, KEY)


def test_not_encrypted(blob):
    with pytest.raises(CorruptFileError, match="not an encrypted"):
        decrypt_bytes(b"\x08\x07\x12\x07pytorch" + bytes(200), KEY)
    assert is_encrypted(blob) and is_encrypted(bytearray(blob)) and not is_encrypted(b"TAOEN")


def test_hostile_kdf_params_rejected_without_running_them(blob):
    import hashlib

    head = bytearray(blob[:63])
    head[8] = 40  # N = 2**40 would need terabytes of memory
    forged = bytes(head) + hashlib.sha256(head).digest()[:8] + blob[HEADER_LEN:]
    with pytest.raises(CorruptFileError, match="KDF"):
        decrypt_bytes(forged, KEY)


def test_header_layout_documented(blob):
    magic, version, kdf, log2_n, r, p = struct.unpack_from("<6sBBBBB", blob)
    (length,) = struct.unpack_from("<Q", blob, 39)
    assert (magic, version, kdf) == (b"TAOENC", 1, crypto.KDF_SCRYPT)
    assert (log2_n, r, p) == (15, 8, 1) and length == len(DATA)


def test_file_helpers(tmp_path):
    src, dst = tmp_path / "model.onnx", tmp_path / "out" / "model.onnx.enc"
    src.write_bytes(DATA)
    encrypt_file(src, dst, KEY)
    assert is_encrypted(dst) and not is_encrypted(src) and not is_encrypted(tmp_path / "missing")
    assert decrypt_file(dst, KEY) == DATA
    assert [p.name for p in dst.parent.iterdir()] == ["model.onnx.enc"]  # no temp file left
    with pytest.raises(WrongKeyError, match=str(dst)):
        decrypt_file(dst, "other")
    dst.write_bytes(dst.read_bytes()[:-5])
    with pytest.raises(CorruptFileError, match=str(dst)):
        decrypt_file(dst, KEY)
    with pytest.raises(TaoUserError, match="not found"):
        decrypt_file(tmp_path / "missing", KEY)
