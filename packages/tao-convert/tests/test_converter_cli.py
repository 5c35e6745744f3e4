"""tao-converter end to end (subprocess) and its argument checks (in process)."""

import platform
import subprocess
import sys

import numpy as np
import onnx
import pytest

from tao_convert.cli import main, parse_profile_arg
from tao_core.etlt import write_etlt
from tao_deploy import Calibration, build_engine, load_engine
from tao_deploy.engine.engine_file import read_metadata
from tao_deploy.testing import random_batches, tiny_cnn


def _run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "tao_convert", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save_model(tiny_cnn(), path)
    return path


def test_onnx_happy_path_with_defaults(onnx_file, tmp_path):
    r = _run("-d", "3,16,16", "-o", "logits,probs", "-t", "fp16", onnx_file, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "engine backend:" in r.stderr and "Detected 1 inputs and 2 output" in r.stderr
    engine = load_engine(tmp_path / "saved.engine")  # TAO's default -e
    assert engine.precision == "fp16" and engine.output_names == ["logits", "probs"]
    assert engine.metadata["profile"]["input"] == {
        "min": [1, 3, 16, 16],
        "opt": [16, 3, 16, 16],
        "max": [16, 3, 16, 16],
    }
    out = engine.run({"input": np.ones((16, 3, 16, 16), np.float32)})
    assert out["probs"].shape == (16, 5)


def test_etlt_with_key_and_profile(tmp_path):
    etlt = tmp_path / "tiny.etlt"
    write_etlt(etlt, tiny_cnn().SerializeToString(), "", "nvidia_tlt")
    r = _run(
        "-k",
        "nvidia_tlt",
        "-d",
        "3,16,16",
        "-o",
        "logits",
        "-e",
        "out/m.engine",
        "-p",
        "input,1x3x16x16,2x3x16x16,4x3x16x16",
        etlt,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    meta = read_metadata(tmp_path / "out" / "m.engine")
    assert meta["profile"]["input"]["opt"] == [2, 3, 16, 16] and meta["source"] == "tiny.etlt"


def test_wrong_key_and_missing_key(tmp_path):
    etlt = tmp_path / "tiny.etlt"
    write_etlt(etlt, tiny_cnn().SerializeToString(), "", "right")
    r = _run("-k", "wrong", "-d", "3,16,16", "-o", "logits", etlt, cwd=tmp_path)
    assert r.returncode == 1 and "wrong key" in r.stderr and "Traceback" not in r.stderr
    r = _run("-d", "3,16,16", "-o", "logits", etlt, cwd=tmp_path)
    assert r.returncode == 1 and "pass its key with -k" in r.stderr
    assert not (tmp_path / "saved.engine").exists()


@pytest.mark.parametrize(
    "profile,message",
    [
        ("input,1x3x16x16,2x3x16x16", "expected <input name>,<min>,<opt>,<max>"),
        ("input,1,3,16,16", "expected <input name>,<min>,<opt>,<max>"),  # commas inside a shape
        ("input,1x3x16x16,2x3x16x16,4x3x16xa", "bad shape"),
        ("input,1x3x16x16,8x3x16x16,4x3x16x16", "min <= opt <= max"),
        ("input,1x3x16,1x3x16x16,1x3x16x16", "same rank"),
        ("input,0x3x16x16,1x3x16x16,1x3x16x16", "must be > 0"),
        ("image,1x3x16x16,1x3x16x16,1x3x16x16", "model's inputs are"),
        ("input,1x3x32x32,1x3x32x32,1x3x32x32", "fixed to 16"),
    ],
)
def test_profile_errors(onnx_file, tmp_path, capsys, profile, message):
    assert main(["-d", "3,16,16", "-o", "logits", "-e", str(tmp_path / "m.engine"), "-p", profile, str(onnx_file)]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["-d", "3,16"], "-i nchw takes 3 dims"),
        (["-d", "3,x,16"], "comma-separated integers"),
        (["-d", "3,32,32"], "fixed to 16"),
        (["-d", "3,16,16", "-m", "0"], "-m must be > 0"),
        (["-d", "3,16,16", "-o", "nope"], "not outputs of the model"),
        (["-d", "3,16,16", "-s"], "strict type"),
        (["-d", "3,16,16", "-t", "int8", "-c", "missing.bin"], "needs an existing calibration cache"),
    ],
)
def test_argument_errors(onnx_file, tmp_path, capsys, args, message):
    argv = [*args, str(onnx_file)] if "-o" in args else ["-o", "logits", *args, str(onnx_file)]
    assert main(["-e", str(tmp_path / "m.engine"), *argv]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="DLA refusal is x86-specific")
def test_dla_rejected_on_x86(onnx_file, tmp_path):
    r = _run("-d", "3,16,16", "-o", "logits", "-u", "0", onnx_file, cwd=tmp_path)
    assert r.returncode == 1 and "DLA" in r.stderr and "Jetson" in r.stderr


def test_int8_with_existing_cache(onnx_file, tmp_path):
    cache = tmp_path / "cal.bin"
    build_engine(
        onnx_file,
        tmp_path / "ref.engine",
        "int8",
        calibration=Calibration(data=random_batches((2, 3, 16, 16), 3), cache_file=cache),
    )
    r = _run("-d", "3,16,16", "-o", "logits", "-t", "int8", "-m", "2", onnx_file, cwd=tmp_path)  # default -c ./cal.bin
    assert r.returncode == 0, r.stderr
    assert "reusing calibration cache" in r.stderr
    meta = read_metadata(tmp_path / "saved.engine")
    assert meta["precision"] == "int8" and meta["cal_batch_size"] == 8


def test_parse_profile_arg():
    name, r = parse_profile_arg("inputs,1x3x544x960,4x3x544x960,8x3x544x960")
    assert name == "inputs" and r.max == (8, 3, 544, 960)


def test_console_script_declared():
    from importlib.metadata import entry_points

    eps = [e for e in entry_points(group="console_scripts") if e.name == "tao-converter"]
    assert eps and eps[0].value == "tao_convert.cli:main"
