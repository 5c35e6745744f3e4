"""Training faults with real subprocesses and a tiny DINO on tiny generated data: a signal is a
stop with a resumable checkpoint, never a success; a failure after progress keeps the progress;
a bad image is found before compute and a worker's error is one line; a rerun after a spec change
is one line; the key is written nowhere and outputs follow the umask."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import _generated, run_cli, status_lines, write_spec

from tao_core.errors import TaoUserError
from tao_pytorch.common.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent
STEPS = 3  # per epoch: 6 train images, batch 2


@pytest.fixture
def own_sources(tmp_path) -> dict:
    """Generated images in tmp_path (the tests damage them; shared data is never touched)."""
    return {"train": _generated(tmp_path / "data", "train", 6, 0), "val": _generated(tmp_path / "data", "val", 4, 1)}


def _train_cmd(spec: Path, *args: str) -> list[str]:
    code = "import sys; from tao_pytorch.dino.cli import CLI; CLI.main(sys.argv[1:])"
    return [sys.executable, "-c", code, "train", "-e", str(spec), *args]


def _wait_for_epoch(task_dir: Path, proc, timeout=600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (task_dir / "status.json").exists() and any(r.get("message") == "Training loop in progress"
                                                       for r in status_lines(task_dir)):
            return
        time.sleep(0.1)
    raise AssertionError(f"training did not reach an epoch end: {proc.poll()}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_training_with_a_resumable_checkpoint(tmp_path, sources, sig):
    spec = write_spec(tmp_path / "spec.yaml", "dino", sources, tmp_path / "results", train={"num_epochs": 200})
    task_dir = tmp_path / "results" / "train"
    proc = subprocess.Popen(_train_cmd(spec), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_epoch(task_dir, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert f"error: dino train stopped by {sig.name} at epoch" in err.strip().splitlines()[-1]
    lines = status_lines(task_dir)
    assert not any(r["status"] == "SUCCESS" for r in lines)
    last = lines[-1]
    assert last["status"] == "FAILURE" and last["stopped_by"] == sig.name and last["step"] >= STEPS
    # the latest checkpoint holds exactly the progress the stopped line reports
    latest = load_checkpoint(task_dir / "dino_model_latest.pth")
    assert latest["global_step"] == last["step"]
    if last["step"] % STEPS:  # stopped mid-epoch: written on the way out, and said so
        assert "resumable checkpoint written" in last["message"]
    if sig == signal.SIGTERM:  # the same command resumes from there (fewer epochs to keep it short)
        epochs = last["step"] // STEPS + 1
        assert run_cli("dino", spec, f"train.num_epochs={epochs}") == 0
        assert load_checkpoint(task_dir / "dino_model_latest.pth")["global_step"] == epochs * STEPS
        assert status_lines(task_dir)[-1]["status"] == "SUCCESS"


def test_a_stop_inside_an_optimizer_update_writes_no_checkpoint(tmp_path, own_sources):
    """The grace period runs out while step 5 updates the weights: a checkpoint then could hold half
    a step, so none is written on the way out and the epoch-end one (step 3) stays the resume point."""
    spec = write_spec(tmp_path / "spec.yaml", "dino", own_sources, tmp_path / "results", train={"num_epochs": 200})
    task_dir = tmp_path / "results" / "train"
    env = dict(os.environ, TAO_STOP_GRACE_S="1")
    proc = subprocess.run([sys.executable, str(HERE / "stop_mid_update.py"), str(spec)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 143, proc.stderr[-3000:]
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: dino train stopped by SIGTERM") and "grace period ran out" in last_line
    last = status_lines(task_dir)[-1]
    assert last["status"] == "FAILURE" and "no checkpoint written on the way out" in last["message"]
    assert [p.name for p in task_dir.glob("model_epoch_*.pth")] == [f"model_epoch_000_step_{STEPS:05d}.pth"]
    assert load_checkpoint(task_dir / "dino_model_latest.pth")["global_step"] == STEPS


def test_a_killed_checkpoint_write_leaves_no_temporary_after_the_next_start(tmp_path, own_sources):
    spec = write_spec(tmp_path / "spec.yaml", "dino", own_sources, tmp_path / "results", train={"num_epochs": 2})
    task_dir = tmp_path / "results" / "train"
    proc = subprocess.run([sys.executable, str(HERE / "kill_during_save.py"), str(spec)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert list(task_dir.glob(".model_epoch_001*.tmp"))
    assert run_cli("dino", spec) == 0
    assert not [p for p in task_dir.iterdir() if p.name.endswith(".tmp")]


def test_truncated_and_broken_images_are_decided_before_compute(tmp_path, own_sources, caplog):
    image_dir = Path(own_sources["train"]["image_dir"])
    cut = image_dir / "img0.jpg"
    cut.write_bytes(cut.read_bytes()[:-20])  # what browsers show normally: a warning, training runs
    spec = write_spec(tmp_path / "spec.yaml", "dino", own_sources, tmp_path / "results")
    assert run_cli("dino", spec) == 0
    assert f"{cut}: the file is cut short (truncated)" in (tmp_path / "results" / "train" / "train.log").read_text()

    for name in ("img1.jpg", "img2.jpg"):  # undecodable: one error naming both, before any step
        path = image_dir / name
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    spec = write_spec(tmp_path / "spec2.yaml", "dino", own_sources, tmp_path / "results2")
    with pytest.raises(TaoUserError, match=r"2 of 6 images cannot be used") as err:
        run_cli("dino", spec)
    assert "img1.jpg" in str(err.value) and "img2.jpg" in str(err.value)
    assert not list((tmp_path / "results2" / "train").glob("*.pth"))


def test_a_worker_error_is_the_same_one_line(tmp_path, own_sources):
    """An image damaged after the load-time check (disk changed under a running job), read by a
    DataLoader worker process: the user sees the reader's one line, not a worker traceback."""
    from tao_pytorch.detr.data.loader import build_dataloader, build_dataset

    cfg = {"train_data_sources": [own_sources["train"]], "num_classes": 2, "batch_size": 2, "workers": 2,
           "dataset_type": "default", "augmentation": {"test_random_resize": 96}}
    dataset = build_dataset(cfg, "train")
    broken = Path(own_sources["train"]["image_dir"]) / "img3.jpg"
    broken.write_bytes(b"\x00" * 64)
    loader = build_dataloader(cfg, "eval", dataset=dataset, batch_size=2)
    with pytest.raises(TaoUserError) as err:
        for _ in loader:
            pass
    message = str(err.value)
    assert message.startswith(f"{broken}: ") and "\n" not in message
    assert "Caught" not in message and "Traceback" not in message


def test_a_failure_in_validation_keeps_the_trained_steps(tmp_path, own_sources):
    """The val loader dies on an image damaged after the check: the epoch's training is saved on
    the way out, so the rerun resumes instead of starting over."""
    spec = write_spec(tmp_path / "spec.yaml", "dino", own_sources, tmp_path / "results")
    task_dir = tmp_path / "results" / "train"
    victim = Path(own_sources["val"]["image_dir"]) / "img0.jpg"
    intact = victim.read_bytes()
    proc = subprocess.run([sys.executable, str(HERE / "break_val_image.py"), str(spec), str(victim)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == f"error: {victim}: not a readable image (unknown or corrupt format)"
    assert "Traceback" not in proc.stderr
    latest = load_checkpoint(task_dir / "dino_model_latest.pth")
    assert latest["global_step"] == STEPS
    victim.write_bytes(intact)
    assert run_cli("dino", spec, "train.num_epochs=2") == 0
    assert "resuming training from" in (task_dir / "train.log").read_text()
    assert load_checkpoint(task_dir / "dino_model_latest.pth")["global_step"] == 2 * STEPS


def test_rerun_after_a_spec_change_is_one_line_and_keeps_the_record(dino_run_copy, tmp_path, sources):
    record = (dino_run_copy / "train" / "experiment.yaml").read_text()
    spec = write_spec(tmp_path / "spec.yaml", "dino", sources, dino_run_copy, num_classes=3)
    with pytest.raises(TaoUserError) as err:
        run_cli("dino", spec)
    message = str(err.value)
    assert "\n" not in message and "cannot resume from" in message
    assert "dataset.num_classes 2 -> 3" in message
    assert "new results dir (-r NEW_DIR)" in message and "remove" in message
    assert (dino_run_copy / "train" / "experiment.yaml").read_text() == record


def test_key_written_nowhere_and_outputs_follow_the_umask(tmp_path, own_sources):
    key = "tao-Key-9f3e2d"
    spec = write_spec(tmp_path / "spec.yaml", "dino", own_sources, tmp_path / "results")
    old = os.umask(0o022)
    try:
        assert run_cli("dino", spec, "-k", key) == 0
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "results").rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".pth" for p in files) and any(p.name == "experiment.yaml" for p in files)
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data, path
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path  # readable by a service of another user
        if path.suffix == ".pth":
            assert key not in json.dumps(load_checkpoint(path, key), default=str)
    assert "<redacted>" in (tmp_path / "results" / "train" / "experiment.yaml").read_text()
