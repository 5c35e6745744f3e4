"""INT8 calibration from a TAO tensorfile (`cal_data_file`): engines, spec wiring, early errors."""

import numpy as np
import onnx
import pytest
from PIL import Image

from tao_core.data.tensorfile import TensorFile, TensorFileWriter, write_tensorfile
from tao_core.errors import TaoUserError
from tao_core.specs.common import GenTrtEngineConfig
from tao_deploy import Calibration, build_engine, build_from_spec, load_engine, prepare_onnx
from tao_deploy.engine import calibration as cal
from tao_deploy.engine.engine_file import read_engine
from tao_deploy.engine.tensorfile_source import (
    TensorfileBatches,
    TensorfileFromImages,
    tensorfile_batches,
    write_calibration_tensorfile,
)
from tao_deploy.testing import tiny_cnn, tiny_gridsample

MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def realistic_batches(n, batch=4, size=16, seed=0):
    """Preprocessed 'photos': smooth colour gradients + blobs + sensor noise, /255 then mean/std."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for _ in range(n):
        imgs = []
        for _ in range(batch):
            base = rng.uniform(40, 200, (3, 1, 1)) + rng.uniform(-60, 60, (3, 1, 1)) * (xx + yy) / 2
            cy, cx, r = rng.uniform(0, 1, 3)
            blob = (((yy - cy) ** 2 + (xx - cx) ** 2) < (0.1 + 0.2 * r) ** 2) * rng.uniform(-80, 80, (3, 1, 1))
            img = np.clip(base + blob + rng.normal(0, 6, (3, size, size)), 0, 255).round() / 255.0
            imgs.append((img - MEAN) / STD)
        out.append(np.stack(imgs).astype(np.float32))
    return out


@pytest.fixture
def cal_file(tmp_path):
    path = tmp_path / "calibration.tensor"
    assert write_calibration_tensorfile(path, realistic_batches(6)) == 6
    return path


def _ops(engine_path):
    return [n.op_type for n in onnx.load_model_from_string(read_engine(engine_path)[1]).graph.node]


def test_int8_engine_from_tensorfile_has_qdq(cnn_path, cal_file, tmp_path, sample):
    data = tensorfile_batches(cal_file, max_batches=5)
    assert len(data) == 5
    cache = tmp_path / "cal.bin"
    info = build_engine(
        cnn_path,
        tmp_path / "int8.engine",
        "int8",
        calibration=Calibration(data=data, cache_file=cache),
        min_batch=1,
        opt_batch=4,
        max_batch=4,
    )
    ops = _ops(info.path)
    assert ops.count("QuantizeLinear") >= 3 and "DequantizeLinear" in ops
    # the input range is the normalised images' (about -2.1 .. 2.6), not [0, 1)
    amax = cal.read_cache(cache).amax()
    assert 2.0 < amax["input"] < 3.0
    out = load_engine(info.path).run({"input": sample})
    assert out["logits"].shape == (2, 5) and np.isfinite(out["logits"]).all()


def test_same_scales_as_the_batches_themselves(cnn_path, cal_file, tmp_path):
    """Reading through the tensorfile changes nothing: the cache equals a build from the arrays."""
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    build_engine(
        cnn_path,
        tmp_path / "a.engine",
        "int8",
        max_batch=4,
        calibration=Calibration(data=tensorfile_batches(cal_file), method="minmax", cache_file=a),
    )
    build_engine(
        cnn_path,
        tmp_path / "b.engine",
        "int8",
        max_batch=4,
        calibration=Calibration(data=realistic_batches(6), method="minmax", cache_file=b),
    )
    assert cal.read_cache(a).scales == cal.read_cache(b).scales


def test_batches_are_sequential_and_cut_to_batch_size(cal_file):
    want = realistic_batches(6)
    got = list(tensorfile_batches(cal_file, max_batches=3, batch_size=2))
    assert len(got) == 3
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w[:2])
    src = tensorfile_batches(cal_file, max_batches=2)
    assert len(list(src)) == len(list(src)) == 2  # re-iterable


def test_too_few_batches_fails_before_building(cnn_path, cal_file, tmp_path, no_build):
    with pytest.raises(TaoUserError, match=r"holds 6 batches, but 10 are requested"):
        build_engine(
            cnn_path,
            tmp_path / "x.engine",
            "int8",
            max_batch=4,
            calibration=Calibration(data=tensorfile_batches(cal_file, max_batches=10)),
        )
    assert not (tmp_path / "x.engine").exists()


def test_wrong_image_size_fails_before_building(cnn_path, tmp_path, no_build):
    path = tmp_path / "big.tensor"
    write_calibration_tensorfile(path, realistic_batches(2, size=24))
    with pytest.raises(TaoUserError, match=r"dim 2 is 24, expected 16"):
        build_engine(
            cnn_path, tmp_path / "x.engine", "int8", max_batch=4, calibration=Calibration(data=tensorfile_batches(path))
        )


def test_wrong_channels_and_rank(cnn_path, tmp_path, no_build):
    gray = tmp_path / "gray.tensor"
    write_tensorfile(gray, [np.zeros((4, 1, 16, 16), np.float32)] * 2)
    with pytest.raises(TaoUserError, match=r"dim 1 is 1, expected 3"):
        build_engine(
            cnn_path, tmp_path / "x.engine", "int8", max_batch=4, calibration=Calibration(data=tensorfile_batches(gray))
        )
    flat = tmp_path / "flat.tensor"
    write_tensorfile(flat, [np.zeros((4, 768), np.float32)])
    with pytest.raises(TaoUserError, match=r"rank 2"):
        build_engine(
            cnn_path, tmp_path / "x.engine", "int8", max_batch=4, calibration=Calibration(data=tensorfile_batches(flat))
        )


def test_batch_outside_profile(cnn_path, cal_file, tmp_path, no_build):
    with pytest.raises(TaoUserError, match=r"batches of 4 samples are outside the engine's batch range 1..2"):
        build_engine(
            cnn_path,
            tmp_path / "x.engine",
            "int8",
            max_batch=2,
            calibration=Calibration(data=tensorfile_batches(cal_file)),
        )
    # cut to the profile, as TAO's calibrator does with its batch size: fine
    data = tensorfile_batches(cal_file, max_batches=2, batch_size=2)
    data.validate(*_inputs_and_profile(max_batch=2))


def _inputs_and_profile(max_batch):
    from tao_deploy.engine.onnx_io import input_specs
    from tao_deploy.engine.profile import batch_profile

    inputs = input_specs(tiny_cnn())
    return inputs, batch_profile(inputs, 1, 1, max_batch)


def test_fixed_batch_model(tmp_path, cal_file, no_build):
    model = tiny_cnn()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    with pytest.raises(TaoUserError, match=r"fixed batch of 2"):
        build_engine(model, tmp_path / "x.engine", "int8", calibration=Calibration(data=tensorfile_batches(cal_file)))


def test_batch_size_larger_than_records(cal_file):
    with pytest.raises(TaoUserError, match=r"holds 4 samples, fewer than the calibration batch size 8"):
        tensorfile_batches(cal_file, batch_size=8)


@pytest.mark.parametrize("kw, match", [({"max_batches": 0}, "must be > 0"), ({"batch_size": -1}, "must be > 0")])
def test_bad_counts(cal_file, kw, match):
    with pytest.raises(TaoUserError, match=match):
        tensorfile_batches(cal_file, **kw)


def test_missing_and_non_hdf5(tmp_path):
    with pytest.raises(TaoUserError, match="not found"):
        tensorfile_batches(tmp_path / "nope.tensor")
    junk = tmp_path / "cal.tensor"
    junk.write_text("TRT-100300-EntropyCalibration2\ninput: 3c010204\n")  # a cache given as the data file
    with pytest.raises(TaoUserError, match="not an HDF5 file"):
        tensorfile_batches(junk)


def test_empty_tensorfile(tmp_path):
    path = tmp_path / "empty.tensor"
    write_tensorfile(path, [])
    with pytest.raises(TaoUserError, match="holds no batches"):
        tensorfile_batches(path)


def test_integer_records_rejected_early(tmp_path):
    path = tmp_path / "u8.tensor"
    write_tensorfile(path, [np.zeros((2, 3, 16, 16), np.uint8)])
    with pytest.raises(TaoUserError, match="record 0 holds uint8, not preprocessed float"):
        tensorfile_batches(path)


def test_dict_records_and_input_name(tmp_path, cnn_path, grid_path):
    rng = np.random.default_rng(3)
    # single input, records keyed by the input name (TAO's calibration_tensorfile may write dicts)
    path = tmp_path / "named.tensor"
    write_tensorfile(path, [{"input": b} for b in realistic_batches(2, batch=2)])
    prepare_onnx(tiny_cnn(), "int8", Calibration(data=tensorfile_batches(path)))
    with pytest.raises(TaoUserError, match=r"has arrays \['input'\], not 'other'"):
        tensorfile_batches(path, input_name="other")
    # bare arrays fed to a named input the model does not have
    arrays = tmp_path / "arrays.tensor"
    write_tensorfile(arrays, realistic_batches(1, batch=2))
    wrong = tensorfile_batches(arrays, input_name="image")
    with pytest.raises(TaoUserError, match=r"feeds \['image'\].*inputs are \['input'\]"):
        build_engine(cnn_path, tmp_path / "x.engine", "int8", max_batch=2, calibration=Calibration(data=wrong))
    # two inputs: dict records without the one-shape rule
    two = tmp_path / "two.tensor"
    write_calibration_tensorfile(
        two,
        [
            {
                "image": rng.random((2, 3, 16, 16), np.float32),
                "grid": rng.uniform(-1, 1, (2, 8, 8, 2)).astype(np.float32),
            }
            for _ in range(3)
        ],
    )
    with TensorFile(two) as tf:
        assert tf.shape is None and len(tf) == 3
    info = build_engine(
        grid_path, tmp_path / "g.engine", "int8", max_batch=2, calibration=Calibration(data=tensorfile_batches(two))
    )
    assert "QuantizeLinear" in _ops(info.path)
    # bare arrays for a two-input model: refused before building
    bare = tmp_path / "bare.tensor"
    write_tensorfile(bare, [rng.random((2, 3, 16, 16), np.float32)])
    with pytest.raises(TaoUserError, match=r"model has inputs \['image', 'grid'\]"):
        build_engine(
            tiny_gridsample(),
            tmp_path / "y.engine",
            "int8",
            max_batch=2,
            calibration=Calibration(data=tensorfile_batches(bare)),
        )


def test_file_written_by_tao_layout_is_read(tmp_path, cnn_path):
    """Raw h5py, exactly as TAO's TensorFile writes: usable as cal_data_file."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "tao.tensor"
    batches = realistic_batches(3, batch=2)
    with h5py.File(path, "w") as f:
        f.attrs["count"] = 0
        for i, b in enumerate(batches):
            f.attrs["shape"] = b.shape
            f.create_group(f"_tensorfile_array_key__{i}").create_dataset(
                "_tensorfile_array_key_", data=b, compression="gzip"
            )
            f.attrs["count"] = i + 1
    got = list(tensorfile_batches(path))
    assert len(got) == 3 and np.array_equal(got[2], batches[2])


# ---- build_from_spec (cal_data_file) ---------------------------------------------------


def _spec(tmp_path, cnn_path, batches=2, batch_size=2):
    spec = GenTrtEngineConfig(
        onnx_file=str(cnn_path), trt_engine=str(tmp_path / "m.engine"), input_width=16, input_height=16
    )
    spec.tensorrt.data_type = "INT8"
    spec.tensorrt.max_batch_size = 2
    spec.tensorrt.calibration.cal_batches = batches
    spec.tensorrt.calibration.cal_batch_size = batch_size
    spec.tensorrt.calibration.cal_cache_file = str(tmp_path / "cal.bin")
    return spec


def test_build_from_spec_with_cal_data_file(tmp_path, cnn_path, cal_file, sample):
    spec = _spec(tmp_path, cnn_path, batches=3, batch_size=2)
    info = build_from_spec(spec, cal_data_file=cal_file)
    assert info.precision == "int8" and (tmp_path / "cal.bin").is_file()
    assert "QuantizeLinear" in _ops(info.path)
    assert load_engine(info.path).run({"input": sample})["logits"].shape == (2, 5)
    # the cache now exists: the tensorfile is not needed any more
    cal_file.unlink()
    assert build_from_spec(spec, cal_data_file=cal_file).precision == "int8"


def test_build_from_spec_too_few_batches(tmp_path, cnn_path, cal_file, no_build):
    spec = _spec(tmp_path, cnn_path, batches=7)
    with pytest.raises(TaoUserError, match=r"holds 6 batches, but 7 are requested \(cal_batches"):
        build_from_spec(spec, cal_data_file=cal_file)


def test_build_from_spec_missing_tensorfile(tmp_path, cnn_path, no_build):
    spec = _spec(tmp_path, cnn_path)
    with pytest.raises(TaoUserError, match=r"not found \(cal_data_file\)"):
        build_from_spec(spec, cal_data_file=tmp_path / "nope.tensor")


def test_build_from_spec_writes_tensorfile_from_images(tmp_path, cnn_path):
    """TAO: --cal_data_file with --cal_image_dir writes the tensorfile, then calibrates from it."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (i * 60, 10, 200)).save(imgs / f"{i}.jpg")
    spec = _spec(tmp_path, cnn_path, batches=2, batch_size=2)
    spec.tensorrt.calibration.cal_image_dir = [str(imgs)]

    def preprocess(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0

    out = tmp_path / "gen" / "cal.tensor"
    info = build_from_spec(spec, preprocess=preprocess, cal_data_file=out)
    assert info.precision == "int8"
    with TensorFile(out) as tf:
        assert len(tf) == 2 and tf.shape == (2, 3, 16, 16)
        assert tf[0].max() <= 1.0


def test_from_images_source_is_lazy(tmp_path):
    batches = realistic_batches(2, batch=2)
    src = TensorfileFromImages(tmp_path / "lazy.tensor", batches)
    assert len(src) == 2 and not (tmp_path / "lazy.tensor").exists()
    got = list(src)
    assert (tmp_path / "lazy.tensor").is_file() and np.array_equal(got[1], batches[1])


def test_reexported_from_calibration_module():
    assert cal.tensorfile_batches is tensorfile_batches and cal.TensorfileBatches is TensorfileBatches


def test_writer_refuses_nothing_to_write(tmp_path):
    with pytest.raises(TaoUserError, match="no calibration batches"):
        write_calibration_tensorfile(tmp_path / "x.tensor", [])
    assert TensorFileWriter  # the tao-core writer is the one implementation used here
