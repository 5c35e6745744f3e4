"""Checkpoint names and the resume rule every network's training shares (tao_core.results.checkpoints)."""

import os

import pytest

from tao_core.errors import TaoUserError
from tao_core.results.checkpoints import epoch_checkpoint_name, latest_checkpoint_name, resolve_resume


def test_names():
    # TAO's own OneFormer / DINO files: model_epoch_006_step_25879.pth, oneformer_model_latest.pth
    assert epoch_checkpoint_name(6, 25879) == "model_epoch_006_step_25879.pth"
    assert latest_checkpoint_name("oneformer") == "oneformer_model_latest"
    assert latest_checkpoint_name("dd") == "dd_model_latest"


def test_resume_prefers_the_given_path_then_the_latest(tmp_path):
    assert resolve_resume(None, str(tmp_path), "oneformer") is None
    latest = tmp_path / "oneformer_model_latest.pth"
    latest.write_bytes(b"x")
    assert resolve_resume(None, str(tmp_path), "oneformer") == str(latest)
    assert resolve_resume("", str(tmp_path), "dino") is None  # another network's latest is not this one's
    given = tmp_path / "other.pth"
    given.write_bytes(b"x")
    assert resolve_resume(str(given), str(tmp_path), "oneformer") == str(given)


def test_resume_errors_are_one_line(tmp_path):
    with pytest.raises(TaoUserError, match=r"train.resume_training_checkpoint_path: .*model.ckpt must be a .pth or .tlt"):
        resolve_resume(str(tmp_path / "model.ckpt"), str(tmp_path), "dino")
    with pytest.raises(TaoUserError, match="does not exist"):
        resolve_resume(str(tmp_path / "gone.pth"), str(tmp_path), "dino")
    os.symlink(tmp_path / "model_epoch_000_step_00001.pth", tmp_path / "dino_model_latest.pth")
    with pytest.raises(TaoUserError, match="which no longer exists"):
        resolve_resume(None, str(tmp_path), "dino")
