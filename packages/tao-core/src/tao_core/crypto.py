"""Model encryption for `-k KEY`: AES-256-GCM with an scrypt-derived key.

This is tao-core's own format. NVIDIA's codec (PBKDF2 + AES-CTR, closed source) is not
reproduced: its files cannot be verified and CTR has no integrity check, which is why users
of the original cannot tell a wrong key from a corrupt file. Here they are two errors.

File layout (all integers little-endian), version 1::

    offset size  field
         0    6  magic b"TAOENC"
         6    1  format version (1)
         7    1  KDF id (1 = scrypt)
         8    1  scrypt log2(N)  (15 -> N = 32768, 32 MiB of memory, ~0.1 s)
         9    1  scrypt r        (8)
        10    1  scrypt p        (1)
        11   16  salt (random)
        27   12  GCM nonce (random)
        39    8  plaintext length (u64)
        47   16  key check value
        63    8  header checksum = SHA-256(bytes 0..62)[:8]
        71    -  ciphertext (plaintext length bytes) followed by the 16-byte GCM tag

scrypt(key, salt) gives 48 bytes: the first 32 are the AES-256 key, the last 16 are the key
check value stored in the header. The whole 71-byte header is GCM associated data, so no
header byte can be altered undetected. Decryption checks, in order: magic and version ->
header checksum -> length (truncation) -> key check -> GCM tag. A key-check mismatch on an
intact header means a wrong key (`WrongKeyError`); anything else is `CorruptFileError`.
Storing 16 bytes of KDF output costs nothing in secrecy: they are independent of the AES key
and an attacker still pays one scrypt per guessed key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_bytes

MAGIC = b"TAOENC"
VERSION = 1
KDF_SCRYPT = 1
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 15, 8, 1
# Bounds for parameters read from a file: a crafted header must not make us allocate gigabytes
# (scrypt needs 128 * r * N bytes) or spin for minutes (work grows with p).
_MAX_SCRYPT_MEMORY, _MAX_P = 2**28, 16

_HEAD = struct.Struct("<6sBBBBB16s12sQ16s")  # everything up to the checksum
_CHECKSUM_LEN = 8
HEADER_LEN = _HEAD.size + _CHECKSUM_LEN
TAG_LEN = 16
_MAX_PLAINTEXT = 2**31 - 1 - TAG_LEN  # the AEAD API refuses longer inputs


class EncryptionError(TaoUserError):
    """Base of the errors raised for keys and encrypted files."""


class EmptyKeyError(EncryptionError):
    pass


class WrongKeyError(EncryptionError):
    pass


class CorruptFileError(EncryptionError):
    pass


def _key_bytes(key: str | bytes) -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if not raw:
        raise EmptyKeyError("the encryption key is empty; pass the model key with -k KEY")
    return raw


def _derive(key: bytes, salt: bytes, log2_n: int, r: int, p: int) -> tuple[bytes, bytes]:
    derived = Scrypt(salt=salt, length=48, n=2**log2_n, r=r, p=p).derive(key)
    return derived[:32], derived[32:]


def _where(source: str | os.PathLike | None) -> str:
    return f"{source}: " if source else ""


def encrypt_bytes(data: bytes, key: str | bytes) -> bytes:
    """Encrypt `data` under the user key; returns header + ciphertext + tag."""
    raw_key = _key_bytes(key)
    if len(data) > _MAX_PLAINTEXT:
        raise EncryptionError(f"cannot encrypt {len(data)} bytes; the limit is {_MAX_PLAINTEXT} bytes")
    salt, nonce = os.urandom(16), os.urandom(12)
    aes_key, check = _derive(raw_key, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
    params = (KDF_SCRYPT, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
    head = _HEAD.pack(MAGIC, VERSION, *params, salt, nonce, len(data), check)
    header = head + hashlib.sha256(head).digest()[:_CHECKSUM_LEN]
    return header + AESGCM(aes_key).encrypt(nonce, bytes(data), header)


def decrypt_bytes(blob: bytes, key: str | bytes, source: str | os.PathLike | None = None) -> bytes:
    """Decrypt a blob made by `encrypt_bytes`. `source` (a path) is named in error messages.

    Raises WrongKeyError for a wrong key, CorruptFileError for anything damaged or unknown.
    """
    raw_key = _key_bytes(key)
    where = _where(source)
    blob = bytes(blob)
    if not blob.startswith(MAGIC):
        if len(blob) < len(MAGIC) and MAGIC.startswith(blob):
            raise CorruptFileError(f"{where}truncated encrypted file ({len(blob)} bytes)")
        raise CorruptFileError(f"{where}not an encrypted tao-core model (no {MAGIC.decode()} header)")
    if len(blob) <= len(MAGIC):
        raise CorruptFileError(f"{where}truncated encrypted file ({len(blob)} bytes)")
    if blob[len(MAGIC)] != VERSION:
        raise CorruptFileError(
            f"{where}unsupported encryption format version {blob[len(MAGIC)]} "
            f"(this tao-core reads version {VERSION}); the file is corrupt or from a newer release"
        )
    if len(blob) < HEADER_LEN + TAG_LEN:
        raise CorruptFileError(f"{where}truncated encrypted file ({len(blob)} bytes)")
    head, checksum = blob[: _HEAD.size], blob[_HEAD.size : HEADER_LEN]
    if not hmac.compare_digest(hashlib.sha256(head).digest()[:_CHECKSUM_LEN], checksum):
        raise CorruptFileError(f"{where}corrupt encrypted file: header checksum mismatch")
    _, _, kdf, log2_n, r, p, salt, nonce, length, check = _HEAD.unpack(head)
    sane = 1 <= log2_n and r >= 1 and 1 <= p <= _MAX_P and 128 * r * 2**log2_n <= _MAX_SCRYPT_MEMORY
    if kdf != KDF_SCRYPT or not sane:
        raise CorruptFileError(f"{where}corrupt encrypted file: unsupported KDF settings")
    expected = HEADER_LEN + length + TAG_LEN
    if len(blob) != expected:
        state = "truncated" if len(blob) < expected else "has trailing bytes"
        raise CorruptFileError(f"{where}corrupt encrypted file: {state} ({len(blob)} bytes, expected {expected})")
    aes_key, wanted_check = _derive(raw_key, salt, log2_n, r, p)
    if not hmac.compare_digest(wanted_check, check):
        raise WrongKeyError(f"{where}wrong key: the key given with -k is not the one this model was encrypted with")
    try:
        return AESGCM(aes_key).decrypt(nonce, blob[HEADER_LEN:], blob[:HEADER_LEN])
    except InvalidTag:
        raise CorruptFileError(
            f"{where}corrupt encrypted file: the key is right but the data fails its integrity check"
        ) from None


def is_encrypted(blob_or_path: bytes | bytearray | memoryview | str | os.PathLike) -> bool:
    """True if the bytes (or the file at a str/PathLike path) start with the TAOENC magic."""
    if isinstance(blob_or_path, (bytes, bytearray, memoryview)):
        return bytes(blob_or_path[: len(MAGIC)]) == MAGIC
    try:
        with open(blob_or_path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except (FileNotFoundError, IsADirectoryError):
        return False


def encrypt_file(src: str | os.PathLike, dst: str | os.PathLike, key: str | bytes) -> None:
    """Encrypt the file `src` into `dst` (atomic: `dst` is old or complete, never partial)."""
    atomic_write_bytes(dst, encrypt_bytes(_read(src), key))


def decrypt_file(src: str | os.PathLike, key: str | bytes) -> bytes:
    """Decrypted contents of `src`; errors name the file."""
    return decrypt_bytes(_read(src), key, source=src)


def _read(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise TaoUserError(f"{path}: file not found") from None


# ----------------------------------------------------------------------------- secrets in records
# The key is never written anywhere: saved configs (experiment.yaml) and log lines carry this
# placeholder instead. Encrypted model files hold no secret (only ciphertext and a key check
# that costs an attacker one scrypt per guess), so they follow the umask like every output.

REDACTED = "<redacted>"
SECRET_FIELDS = ("encryption_key", "key")


def redact_secrets(data, secrets: tuple[str, ...] | list[str] = ()):
    """A copy of nested dicts / lists with every SECRET_FIELDS value, and every string equal to
    one of `secrets` (the -k key wherever it was pasted), replaced by REDACTED."""
    known = {s for s in secrets if s}

    def walk(node, key=None):
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(v) for v in node]
        if key in SECRET_FIELDS and node not in (None, ""):
            return REDACTED
        if isinstance(node, str) and known:
            for secret in known:
                # a short key would also match inside ordinary words: then only the exact value
                node = node.replace(secret, REDACTED) if len(secret) >= 4 else (REDACTED if node == secret else node)
        return node

    return walk(data)


def redact_text(text: str, secrets) -> str:
    """`text` with every occurrence of the given secrets replaced by REDACTED (for log lines)."""
    for secret in (s for s in secrets if s):
        text = text.replace(secret, REDACTED)
    return text
