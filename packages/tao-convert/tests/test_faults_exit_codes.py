"""One exit-status rule for every command line (tao_core.cli.guard): 0 success, 1 a user error
printed as one line, 128 + N stopped by signal N. Run as real subprocesses."""

import subprocess
import sys

import onnx
import pytest

from tao_deploy.testing import tiny_cnn


def _converter(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tao_convert", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save_model(tiny_cnn(), path)
    return path


@pytest.mark.parametrize("args, says", [
    (["-d", "3,16,16", "-o", "logits", "-t", "int9"], "argument -t: invalid choice: 'int9'"),
    (["-d", "3,16,16", "-o", "logits", "-m", "many"], "argument -m: invalid int value: 'many'"),
    (["-o", "logits"], "the following arguments are required: -d"),
    (["-d", "3,x,16", "-o", "logits"], "-d '3,x,16': expected comma-separated integers"),
])
def test_converter_user_errors_exit_1_with_one_line(onnx_file, tmp_path, args, says):
    r = _converter(*args, onnx_file, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and says in last
    assert "Traceback" not in r.stderr and "usage:" not in r.stderr


def test_converter_help_exits_0(tmp_path):
    r = _converter("--help", cwd=tmp_path)
    assert r.returncode == 0 and "usage: tao-converter" in r.stdout


def test_every_command_gives_1_for_a_bad_flag(tmp_path):
    """`tao`, and a network's own command, answer a bad flag the same way as tao-converter."""
    for code in ("from tao_core.cli.launcher import main; main(['spec', 'validate', 'dino', 'train', '--nope'])",
                 "from tao_deploy.dino.cli import CLI; CLI.main(['evaluate', '--nope'])"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert r.returncode == 1, (code, r.stderr)
        assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.stderr
