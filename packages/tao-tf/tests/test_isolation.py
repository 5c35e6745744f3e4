"""tao-tf runs on tf_keras (Keras 2) and never needs torch."""

import importlib.util
import os
import re
import subprocess
import sys
from importlib.metadata import requires

import pytest


def test_requirements_name_no_torch():
    names = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requires("tao-tf") or []}
    assert "tensorflow" in names and "tf-keras" in names
    assert not names & {"torch", "torchvision", "pytorch-lightning", "lightning"}


@pytest.mark.skipif(os.environ.get("TAO_EXPECT_NO_TORCH") != "1", reason="only meaningful in the nox tf venv")
def test_tf_venv_has_no_torch_installed():
    assert importlib.util.find_spec("torch") is None, "torch got installed with tao-tf"


def test_importing_tao_tf_selects_tf_keras():
    # conftest imports tao_tf before anything touches TensorFlow, exactly as the entry points do
    import tensorflow as tf
    import tf_keras

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tf.keras.Model is tf_keras.Model
    assert "torch" not in sys.modules


def test_cli_import_loads_no_tensorflow():
    code = "import sys, tao_tf.detectnet_v2.cli as c; assert 'tensorflow' not in sys.modules; print(list(c.TASKS))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "dataset_convert" in r.stdout
