"""TAO's TensorFile (HDF5): round trips, the exact on-disk layout, atomic writes, bad inputs."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tao_core.data import tensorfile as tfmod
from tao_core.data.tensorfile import TensorFile, TensorFileWriter, read_tensorfile, write_tensorfile
from tao_core.errors import TaoUserError

h5py = pytest.importorskip("h5py")


def _batches(n, shape=(4, 3, 8, 12), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random(shape, dtype=np.float32) for _ in range(n)]


def test_array_round_trip(tmp_path):
    path = tmp_path / "cal.tensorfile"
    batches = _batches(5)
    with TensorFileWriter(path) as w:
        for b in batches:
            w.write(b)
        assert w.count == 5
    with TensorFile(path) as tf:
        assert len(tf) == tf.count == 5
        assert tf.shape == (4, 3, 8, 12)
        for i, b in enumerate(batches):
            got = tf[i]
            assert isinstance(got, np.ndarray) and got.dtype == np.float32
            np.testing.assert_array_equal(got, b)
        np.testing.assert_array_equal(tf[-1], batches[-1])
        assert tf.record_shapes(2) == (4, 3, 8, 12)
        assert tf.record_dtypes(2) == np.float32
        with pytest.raises(IndexError):
            tf[5]
    got = list(read_tensorfile(path))
    assert len(got) == 5 and all(np.array_equal(a, b) for a, b in zip(got, batches))


def test_dict_and_nested_round_trip(tmp_path):
    path = tmp_path / "multi.tensorfile"
    rng = np.random.default_rng(1)
    records = [
        {
            "image": rng.random((2, 3, 4, 4), dtype=np.float32),
            "meta": {"ids": np.arange(2, dtype=np.int64), "scale": np.float64(0.5) * np.ones(2)},
            "flag": np.asarray(True),
        }
        for _ in range(3)
    ]
    assert write_tensorfile(path, records, same_shape=False) == 3
    with TensorFile(path) as tf:
        assert tf.shape is None
        for rec, want in zip(tf, records):
            assert set(rec) == {"image", "meta", "flag"} and set(rec["meta"]) == {"ids", "scale"}
            np.testing.assert_array_equal(rec["image"], want["image"])
            np.testing.assert_array_equal(rec["meta"]["ids"], want["meta"]["ids"])
            assert rec["meta"]["ids"].dtype == np.int64
            assert bool(rec["flag"]) is True
        assert tf.record_shapes(0) == {"image": (2, 3, 4, 4), "meta": {"ids": (2,), "scale": (2,)}, "flag": ()}
        assert tf.record_dtypes(1)["meta"] == {"ids": np.dtype(np.int64), "scale": np.dtype(np.float64)}


def test_layout_is_taos(tmp_path):
    """Checked with raw h5py: what TAO's TensorFile writes and reads."""
    path = tmp_path / "cal.tensorfile"
    batches = _batches(3, shape=(2, 3, 4, 4))
    with TensorFileWriter(path) as w:
        w.write(batches[0])
        w.write({"input_1": batches[1]})
        w.write({"a": {"b": batches[2]}})
    with h5py.File(path, "r") as f:
        assert int(f.attrs["count"]) == 3
        assert tuple(f.attrs["shape"].tolist()) == (2, 3, 4, 4)
        assert sorted(f.keys()) == [f"_tensorfile_array_key__{i}" for i in range(3)]
        bare = f["_tensorfile_array_key__0"]
        assert list(bare.keys()) == ["_tensorfile_array_key_"]
        ds = bare["_tensorfile_array_key_"]
        assert ds.compression == "gzip" and ds.dtype == np.float32
        np.testing.assert_array_equal(ds[()], batches[0])
        assert f["_tensorfile_array_key__1"]["input_1"].compression == "gzip"
        assert isinstance(f["_tensorfile_array_key__2"]["a"], h5py.Group)
        np.testing.assert_array_equal(f["_tensorfile_array_key__2/a/b"][()], batches[2])
    assert tfmod.group_name(7) == "_tensorfile_array_key__7"


def test_reads_a_file_written_with_raw_h5py_like_tao(tmp_path):
    """A file produced the way TAO's TensorFile does it (attrs set first, count bumped per record)."""
    path = tmp_path / "tao.tensorfile"
    batches = _batches(2, shape=(1, 3, 4, 4))
    with h5py.File(path, "w") as f:
        f.attrs["count"] = 0
        for i, b in enumerate(batches):
            g = f.create_group(f"_tensorfile_array_key__{i}")
            if "shape" not in f.attrs:
                f.attrs["shape"] = b.shape
            g.create_dataset("_tensorfile_array_key_", data=b, compression="gzip")
            f.attrs["count"] = i + 1
    with TensorFile(path) as tf:
        assert len(tf) == 2 and tf.shape == (1, 3, 4, 4)
        np.testing.assert_array_equal(tf[1], batches[1])


def test_declared_shape_enforced(tmp_path):
    path = tmp_path / "s.tensorfile"
    with TensorFileWriter(path, shape=(2, 3)) as w:
        w.write(np.zeros((2, 3), np.float32))
        with pytest.raises(TaoUserError, match=r"record 1.*shape \(3, 2\).*\(2, 3\)"):
            w.write(np.zeros((3, 2), np.float32))
        assert w.count == 1  # the bad record was not written; the writer goes on
        w.write(np.ones((2, 3), np.float32))
    with TensorFile(path) as tf:
        assert len(tf) == 2 and tf.shape == (2, 3)


def test_first_shape_becomes_the_files(tmp_path):
    with TensorFileWriter(tmp_path / "x.tensorfile") as w:
        w.write(np.zeros((4, 3, 2, 2), np.float32))
        with pytest.raises(TaoUserError, match="same_shape=False"):
            w.write({"a": np.zeros((4, 3, 2, 2), np.float32), "b": np.zeros((4, 1), np.float32)})
        assert w.count == 1


def test_atomic_write_keeps_previous_file(tmp_path):
    path = tmp_path / "cal.tensorfile"
    write_tensorfile(path, _batches(2))
    with pytest.raises(RuntimeError):
        with TensorFileWriter(path) as w:
            w.write(np.zeros((1, 1), np.float32))
            assert not path.exists() or len(TensorFile(path)) == 2  # destination untouched meanwhile
            raise RuntimeError("interrupted")
    with TensorFile(path) as tf:
        assert len(tf) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.tensorfile"]  # no temporary left


def test_no_partial_file_while_writing(tmp_path):
    path = tmp_path / "new.tensorfile"
    w = TensorFileWriter(path)
    w.write(np.zeros((2, 2), np.float32))
    assert not path.exists()
    assert w.close() == path and path.is_file()
    assert w.close() == path  # idempotent
    with pytest.raises(TaoUserError, match="closed"):
        w.write(np.zeros((2, 2), np.float32))


def test_overwrite_false(tmp_path):
    path = tmp_path / "cal.tensorfile"
    write_tensorfile(path, _batches(1))
    with pytest.raises(TaoUserError, match="already exists"):
        TensorFileWriter(path, overwrite=False)


def test_empty_tensorfile(tmp_path):
    path = tmp_path / "empty.tensorfile"
    assert write_tensorfile(path, []) == 0
    with TensorFile(path) as tf:
        assert len(tf) == 0 and tf.shape is None and list(tf) == []


@pytest.mark.parametrize(
    "record, match",
    [
        ([1.0, 2.0], "numpy array or a dict"),
        ({}, "empty"),
        ({"a": [1, 2]}, "only numpy arrays"),
        ({"a/b": np.zeros(2)}, "not allowed"),
        ({1: np.zeros(2)}, "not allowed"),
        ({"s": np.array(["x", "y"])}, "not numeric"),
        ({"o": np.array([None, 1], dtype=object)}, "not numeric"),
        ({"n": {}}, "empty"),
    ],
)
def test_bad_records(tmp_path, record, match):
    with TensorFileWriter(tmp_path / "bad.tensorfile", same_shape=False) as w:
        with pytest.raises(TaoUserError, match=match):
            w.write(record)
        assert w.count == 0


def test_missing_file(tmp_path):
    with pytest.raises(TaoUserError, match="not found"):
        TensorFile(tmp_path / "nope.tensorfile")
    with pytest.raises(TaoUserError, match="not found"):
        read_tensorfile(tmp_path / "nope.tensorfile")  # raises on the call, not at the first next()


def test_directory_and_not_hdf5(tmp_path):
    with pytest.raises(TaoUserError, match="not a file"):
        TensorFile(tmp_path)
    junk = tmp_path / "junk.tensorfile"
    junk.write_bytes(b"not an hdf5 file at all" * 20)
    with pytest.raises(TaoUserError, match="not an HDF5 file"):
        TensorFile(junk)


def test_hdf5_but_not_a_tensorfile(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(TaoUserError, match="no 'count' attribute"):
        TensorFile(path)


def test_record_missing(tmp_path):
    path = tmp_path / "cal.tensorfile"
    write_tensorfile(path, _batches(3))
    with h5py.File(path, "a") as f:
        del f["_tensorfile_array_key__1"]
    with pytest.raises(TaoUserError, match=r"record 1 \(_tensorfile_array_key__1\) is missing.*count is 3"):
        TensorFile(path)


def test_inconsistent_shapes(tmp_path):
    path = tmp_path / "cal.tensorfile"
    write_tensorfile(path, _batches(2, shape=(2, 3, 4, 4)))
    with h5py.File(path, "a") as f:
        del f["_tensorfile_array_key__1"]
        g = f.create_group("_tensorfile_array_key__1")
        g.create_dataset("_tensorfile_array_key_", data=np.zeros((2, 3, 5, 5), np.float32), compression="gzip")
    with pytest.raises(TaoUserError, match=r"record 1 has shape \(2, 3, 5, 5\).*\(2, 3, 4, 4\).*inconsistent"):
        TensorFile(path)


def test_bad_count_attribute(tmp_path):
    path = tmp_path / "cal.tensorfile"
    write_tensorfile(path, _batches(1))
    with h5py.File(path, "a") as f:
        f.attrs["count"] = -2
    with pytest.raises(TaoUserError, match="bad 'count'"):
        TensorFile(path)


def test_bad_index_type(tmp_path):
    path = tmp_path / "cal.tensorfile"
    write_tensorfile(path, _batches(1))
    with TensorFile(path) as tf, pytest.raises(TypeError):
        tf["0"]


def test_missing_h5py_is_a_user_error(tmp_path):
    code = (
        "import sys; sys.modules['h5py'] = None\n"
        "from tao_core.errors import TaoUserError\n"
        "from tao_core.data.tensorfile import TensorFile\n"
        "try:\n"
        f"    TensorFile({str(tmp_path / 'x')!r})\n"
        "except TaoUserError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0, out.stderr
    assert "pip install h5py" in out.stdout


def test_module_import_does_not_import_h5py():
    code = "import sys, tao_core.data.tensorfile; assert 'h5py' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
