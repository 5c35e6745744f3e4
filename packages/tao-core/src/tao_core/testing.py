"""Test support shared by every package: locating the project's small real datasets (for tests
and benchmarks), and making file permissions bite when the tests run as root.

Dataset search order: $TAO_SHARED_DATA, then `shared/data` beside the checkout (where CI puts it), then
`shared/data` inside it, then the demo copies under `examples/data`.
"""

import os
from contextlib import contextmanager
from pathlib import Path


def data_roots(repo: str | os.PathLike) -> list[Path]:
    """The folders that may hold datasets, in search order, for the checkout at `repo`."""
    repo = Path(repo)
    env = os.environ.get("TAO_SHARED_DATA")
    roots = [Path(env)] if env else []
    return roots + [repo.parent / "shared" / "data", repo / "shared" / "data", repo / "examples" / "data"]


def find_shared_data(repo: str | os.PathLike) -> Path | None:
    """The first existing shared/data folder (not the examples copy), or None."""
    return next((r for r in data_roots(repo)[:-1] if r.is_dir()), None)


def find_dataset(name: str, repo: str | os.PathLike, marker: str = "annotations/instances_val.json") -> Path | None:
    """`<root>/<name>` of the first root where `marker` exists inside it, or None."""
    return next((r / name for r in data_roots(repo) if (r / name / marker).exists()), None)


# Root ignores file modes (capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), and CI runs as
# root: without these two helpers the "permission denied" paths could only be tested by other users.
# They take the two capabilities away, so root gets the owner's mode bits like anyone else.
_DAC_CAPABILITIES = (1, 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH (linux/capability.h)
_CAPABILITY_VERSION_3 = 0x20080522
_PR_CAPBSET_DROP = 24


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


@contextmanager
def file_modes_enforced():
    """Inside the block, this thread's file access obeys mode bits even as root (a no-op for
    other users). The capabilities stay permitted, so they are raised again on the way out."""
    if os.geteuid() != 0:
        yield
        return
    ctypes, libc = _libc()

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(_CAPABILITY_VERSION_3, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    saved = data[0].effective
    for cap in _DAC_CAPABILITIES:
        data[0].effective &= ~(1 << cap)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)


def enforce_file_modes_in_child() -> None:
    """`preexec_fn` for a subprocess that must obey file modes even when started by root: the two
    capabilities leave its bounding set, so the program it executes never holds them."""
    if os.geteuid() != 0:
        return
    ctypes, libc = _libc()
    for cap in _DAC_CAPABILITIES:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
