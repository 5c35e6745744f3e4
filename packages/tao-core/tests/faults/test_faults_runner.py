"""The task runner (YamlNetworkCli + task_run + run_guarded) as a user and a scheduler see it,
with real subprocesses: a signal never ends in success, results folders that cannot be used are
one line, experiment.yaml is the record of the run that started and never holds the key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tao_core.testing import enforce_file_modes_in_child

TASKS = '''
import json, os, time
from tao_core.cli.network import YamlNetworkCli
from tao_core.errors import TaoUserError

def train(cfg, ctx):
    """train.num_epochs=1: log the key and finish; else a long loop reporting its progress, as training does."""
    if cfg.train.num_epochs == 1:
        import logging
        logging.getLogger("tao.train").info("key given: %s", ctx.key)
        ctx.status.write("RUNNING", "done")
        return
    ctx.experiment.write()
    for step in range(1, 10_000):
        ctx.status.progress = {"epoch": 1 + step // 5, "step": step}
        if step == 3:
            open(os.path.join(ctx.results_dir, "ready"), "w").close()
        time.sleep(0.05)

def evaluate(cfg, ctx):
    """Fails its checks before starting (as a rerun whose model no longer fits does)."""
    raise TaoUserError("the spec does not fit the checkpoint")

CLI = YamlNetworkCli("dino", {"train": "faults_tasks:train", "evaluate": "faults_tasks:evaluate"})
'''

SPEC = """
results_dir: {results}
train:
  num_epochs: 100
dataset:
  num_classes: {num_classes}
  train_data_sources:
    - image_dir: /data/train/images
      json_file: /data/train.json
  val_data_sources:
    - image_dir: /data/val/images
      json_file: /data/val.json
"""


QUICK = "train.num_epochs=1"


@pytest.fixture()
def env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "faults_tasks.py").write_text(TASKS)
    out = dict(os.environ, PYTHONPATH=str(site))
    out.pop("TAO_DEBUG", None)
    return out


def _spec(tmp_path, results, num_classes=2) -> Path:
    path = tmp_path / f"spec{num_classes}.yaml"
    path.write_text(SPEC.format(results=results, num_classes=num_classes))
    return path


def _cmd(*args):
    code = "import sys; from faults_tasks import CLI; CLI.main(sys.argv[1:])"
    return [sys.executable, "-c", code, *args]


def _run(*args, env, **kw):
    return subprocess.run(_cmd(*args), capture_output=True, text=True, env=env, timeout=120, **kw)


def _status(task_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (task_dir / "status.json").read_text().splitlines()]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_is_a_stop_never_a_success(tmp_path, env, sig, code):
    results = tmp_path / "res"
    proc = subprocess.Popen(_cmd("train", "-e", str(_spec(tmp_path, results))), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = results / "train" / "ready"
    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith(f"error: dino train stopped by {sig.name}")
    assert "Traceback" not in err
    last = _status(results / "train")[-1]
    assert last["status"] == "FAILURE" and last["stopped_by"] == sig.name
    assert f"stopped by {sig.name} at epoch" in last["message"] and last["step"] >= 3
    assert not any(line["status"] == "SUCCESS" for line in _status(results / "train"))


def test_experiment_yaml_of_a_previous_run_survives_a_run_failing_its_checks(tmp_path, env):
    results = tmp_path / "res"
    (results / "evaluate").mkdir(parents=True)
    record = results / "evaluate" / "experiment.yaml"
    record.write_text("dataset:\n  num_classes: 2\n")  # what the previous run was
    r = _run("evaluate", "-e", str(_spec(tmp_path, results, num_classes=5)), "evaluate.checkpoint=/x.pth", env=env)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == "error: the spec does not fit the checkpoint"
    assert record.read_text() == "dataset:\n  num_classes: 2\n"


def test_the_key_is_written_nowhere(tmp_path, env):
    results = tmp_path / "res"
    key = "s3cr3t-Key-4711"
    r = _run("train", "-e", str(_spec(tmp_path, results)), "-k", key, f"encryption_key={key}", QUICK, env=env)
    assert r.returncode == 0, r.stderr
    assert key not in r.stderr and key not in r.stdout
    written = [p for p in results.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"experiment.yaml", "status.json", "train.log"}
    for path in written:
        assert key.encode() not in path.read_bytes(), path
    assert "encryption_key: <redacted>" in (results / "train" / "experiment.yaml").read_text()
    assert "key given: <redacted>" in (results / "train" / "train.log").read_text()


def test_results_dir_that_is_a_file(tmp_path, env):
    (tmp_path / "res").write_text("not a folder")
    r = _run("train", "-e", str(_spec(tmp_path, tmp_path / "res")), QUICK, env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: results_dir: {tmp_path / 'res'} is a file, expected a folder (pass -r with a folder path)"


def test_read_only_results_dir(tmp_path, env):
    results = tmp_path / "res"
    (results / "train").mkdir(parents=True)
    os.chmod(results / "train", 0o555)
    # enforce_file_modes_in_child: as root (CI), the task process still obeys the 555 mode.
    r = _run("train", "-e", str(_spec(tmp_path, results)), QUICK, env=env, preexec_fn=enforce_file_modes_in_child)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line == f"error: results_dir: cannot write into {results / 'train'}: permission denied", line
