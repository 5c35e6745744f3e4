"""Every command the top-level README prints works as printed, run as a new user runs it: real
subprocesses, from a fresh folder holding links to the repository's examples/, packages/ and
constraints/, so relative paths and `> spec.yaml` behave as in a clone.

- The ```bash block of "Install one stage alone": the first `pip install` runs for real into a
  fresh virtual environment (tao-core alone: no torch, no tensorflow, which is checked); the
  heavier two are resolved by pip (`--dry-run --report`: every requirement, torch 2.13.0 CPU from
  constraints/torch.txt, without unpacking gigabytes), and the `tao` lines then run in that
  fresh environment, each against what its comment promises.
- The demo command (`bash examples/demo.sh`) runs for real, reusing this test's environment
  (DEMO_VENV) instead of installing, and must end with its table: a model that learned.
- The test command is what `.ci/run` executes; CI runs it, so here it is only checked to be the
  line `.ci/run` extracts (running it would start this suite again).

A README line this test has no expectation for fails the test: a new command needs one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def bash_block_lines(text: str) -> list[str]:
    """Command lines of the README's ```bash blocks."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            inside = line.strip() == "```bash"
            continue
        if inside and line.strip():
            lines.append(line.rstrip())
    return lines


def marker_block(text: str, name: str) -> str:
    m = re.search(rf"<!-- {name} -->\n(.*?)\n<!-- /{name} -->", text, re.S)
    assert m, f"README.md has no {name} marker block"
    return m.group(1).strip()


def command_of(line: str) -> str:
    """The line without its trailing `# comment`."""
    return re.split(r"\s+#\s", line, maxsplit=1)[0].strip()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("readme")
    for name in ("examples", "packages", "constraints"):
        (d / name).symlink_to(REPO / name)
    return d


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("venv") / "v"
    venv.EnvBuilder(with_pip=True).create(path)
    return path


def run(cmd: str, cwd: Path, env_bin: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_bin is not None:
        env["PATH"] = f"{env_bin}{os.pathsep}{env['PATH']}"
        env.pop("PYTHONPATH", None)
        env["VIRTUAL_ENV"] = str(env_bin.parent)
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_install_and_spec_commands_work_as_printed(workdir, fresh_venv):
    lines = bash_block_lines(README.read_text())
    assert lines, "README.md has no ```bash block"
    bin_dir = fresh_venv / "bin"
    pip_lines = [command_of(x) for x in lines if command_of(x).startswith("pip install")]
    assert len(pip_lines) == 3, pip_lines
    checked = set()

    # 1. tao-core alone, for real
    core = pip_lines[0]
    assert core == "pip install ./packages/tao-core"
    r = run(core, workdir, bin_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    no_frameworks = run("python -c \"import importlib.util as u; print(u.find_spec('torch'), u.find_spec('tensorflow'))\"",
                        workdir, bin_dir)
    assert no_frameworks.stdout.split() == ["None", "None"], no_frameworks.stdout
    checked.add(core)

    # 2, 3. deploy / training: pip resolves every requirement as printed
    expected = {"./packages/tao-deploy": {"tao-core", "tao-deploy", "tao-convert", "onnxruntime"},
                "./packages/tao-pytorch": {"tao-core", "tao-pytorch", "torch", "pytorch-lightning"}}
    for line in pip_lines[1:]:
        report = workdir / "report.json"
        r = run(f"{line} --dry-run --ignore-installed --quiet --report {report}", workdir, bin_dir)
        assert r.returncode == 0, f"{line}\n{r.stderr[-3000:]}"
        names = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
        want = next(v for k, v in expected.items() if k in line)
        assert want <= set(names), (line, sorted(names))
        if "torch" in names:
            assert names["torch"].startswith("2.13.0"), names["torch"]
        assert "tensorflow" not in names
        checked.add(line)

    # the tao lines, in the fresh venv (tao-core only), from the work folder, in README order
    expectations = [
        ("tao --help", 0, ["tao spec", "spec networks: dino, deformable_detr"]),
        ("tao spec template dino train > spec.yaml", 0, []),
        ("tao spec validate dino train -e spec.yaml dataset.num_classes=2", 1,
         ["dataset.train_data_sources", "dataset.val_data_sources"]),
        ("tao spec validate dino train -e examples/specs/dino_raccoon.yaml train.num_epochs=2", 0, ["valid"]),
    ]
    known = {c for c, _, _ in expectations}
    tao_lines = [command_of(x) for x in lines if command_of(x).startswith("tao ")]
    unexpected = [c for c in tao_lines if c not in known]
    assert not unexpected, f"README commands without an expectation in this test: {unexpected}"
    for cmd, rc, needles in expectations:
        if cmd not in tao_lines:
            continue  # the README dropped it; nothing to hold
        r = run(cmd, workdir, bin_dir)
        out = r.stdout + r.stderr
        assert r.returncode == rc, f"{cmd}: exit {r.returncode}\n{out[-2000:]}"
        assert "Traceback" not in out, out[-2000:]
        for needle in needles:
            assert needle in out, f"{cmd}: {needle!r} not in\n{out[-2000:]}"
        if "> spec.yaml" in cmd:
            assert "train_data_sources" in (workdir / "spec.yaml").read_text()
        checked.add(cmd)
    assert checked == {command_of(x) for x in lines}, {command_of(x) for x in lines} - checked


def test_test_command_is_what_ci_runs():
    text = README.read_text()
    cmd = marker_block(text, "test-command")
    r = subprocess.run(["bash", "-c", "awk '/<!-- test-command -->/{f=1;next} /<!-- \\/test-command -->/{f=0} "
                        "f && /^[^`]/' README.md | head -n 1"], cwd=REPO, capture_output=True, text=True)
    assert r.stdout.strip() == cmd
    assert "nox" in cmd and (REPO / ".ci" / "run").is_file()


def test_demo_command_runs_and_the_model_learns(workdir, tmp_path):
    cmd = marker_block(README.read_text(), "demo-command")
    assert cmd == "bash examples/demo.sh"
    env = dict(os.environ, DEMO_VENV=sys.prefix)  # this environment has every package the demo installs
    out = tmp_path / "demo"
    r = subprocess.run(["bash", "-c", f"{cmd} {out}"], cwd=workdir, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "== raccoon val (40 images)" in r.stdout
    for name in ("evaluate/results.json", "engine_fp32/evaluate/results.json", "engine_int8/evaluate/results.json",
                 "export/dino.onnx", "engine_int8/nvinfer_config.txt", "inference/labels"):
        assert (out / name).exists(), name
    pytorch = json.loads((out / "evaluate" / "results.json").read_text())
    assert pytorch["mAP50"] > 0.1, pytorch  # chance on raccoon is ~0: the demo model must have learned
    # the INT8 promise on a trained DINO: within 1.0 mAP point of the FP32 engine, on every run
    fp32, int8 = (json.loads((out / f"engine_{p}" / "evaluate" / "results.json").read_text()) for p in ("fp32", "int8"))
    assert fp32["mAP"] - int8["mAP"] <= 0.010, (fp32, int8)
    # the engine's DeepStream config states the engine that was built
    ds = (out / "engine_int8" / "nvinfer_config.txt").read_text()
    assert "network-mode=1" in ds and "int8-calib-file=cal.bin" in ds and "model-engine-file=dino_int8.engine" in ds
    # no progress-bar control codes in a saved (non-terminal) log, no dependency noise
    assert "\r" not in r.stdout + r.stderr
    for noise in ("GPU available:", "TPU available:", "litlogger", "LeafSpec"):
        assert noise not in r.stdout + r.stderr, noise
