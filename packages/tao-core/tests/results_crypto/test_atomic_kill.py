"""Atomic writes: an exception or a SIGKILL mid-write never leaves a partial destination."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tao_core.io.atomic import atomic_write, atomic_write_bytes

# Shared by the test and the child process: version i is a file whose content is fully
# determined by i, with a length that changes between versions so a torn file cannot pass.
MAKE_VERSION = """
import struct
def make_version(i, base):
    length = base + (i % 7) * 4096
    return struct.pack("<Q", i) * (length // 8)
"""
CHILD = (
    MAKE_VERSION
    + """
import sys
from tao_core.io.atomic import atomic_write_bytes
dest, base, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
i = start
while True:
    i += 1
    atomic_write_bytes(dest, make_version(i, base))
    print(i, flush=True)  # after the rename: version i is now complete at dest
"""
)
namespace: dict = {}
exec(MAKE_VERSION, namespace)
make_version = namespace["make_version"]
BASE = 8 * 1024 * 1024


def test_exception_midway_keeps_previous_file(tmp_path):
    dest = tmp_path / "model.onnx"
    atomic_write_bytes(dest, b"version one")
    with pytest.raises(RuntimeError):
        with atomic_write(dest) as f:
            f.write(b"half of version two")
            raise RuntimeError("crash while writing")
    assert dest.read_bytes() == b"version one"
    assert os.listdir(tmp_path) == ["model.onnx"]  # the temporary file was removed


def test_exception_midway_with_no_previous_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "new.txt", "w") as f:
            f.write("partial")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def check_destination(dest, last_reported, start, seed):
    """dest holds one complete version: the last one reported, or the one just renamed."""
    if not dest.exists():
        assert start == 0 and last_reported == 0, f"seed {seed}: destination vanished"
        return
    data = dest.read_bytes()
    assert len(data) >= 8, f"seed {seed}: destination is {len(data)} bytes"
    version = int.from_bytes(data[:8], "little")
    expected = make_version(version, BASE)
    assert hashlib.sha256(data).digest() == hashlib.sha256(expected).digest(), (
        f"seed {seed}: destination is a torn or mixed copy of version {version}"
    )
    newest = max(last_reported, start)
    assert version in (newest, newest + 1), f"seed {seed}: version {version}, last reported {newest}"


@pytest.mark.parametrize("run", range(10))
def test_sigkill_at_random_moment(tmp_path, run):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    dest = tmp_path / "model.etlt"
    start = 0
    if run % 2:  # half the runs start from an existing complete file
        start = 1000
        atomic_write_bytes(dest, make_version(start, BASE))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(dest), str(BASE), str(start)],
        stdout=subprocess.PIPE,
        text=True,
    )
    # Early kills catch the first write in flight; later ones land between or inside later writes.
    time.sleep(rng.uniform(0.0, 0.8))
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    reported = [int(x) for x in out.split()]
    check_destination(dest, reported[-1] if reported else 0, start, seed)
    # A killed writer may leave its temporary file, never anything under another name.
    strays = [p.name for p in tmp_path.iterdir() if p != dest]
    assert all(n.startswith(".model.etlt.") and n.endswith(".tmp") for n in strays), strays
