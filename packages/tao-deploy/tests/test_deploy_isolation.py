"""tao-deploy (and tao-convert when installed) never import torch or tensorflow."""

import importlib.metadata
import importlib.util
import pkgutil
import re
import subprocess
import sys

import tao_deploy

FRAMEWORKS = ("torch", "tensorflow", "tf_keras", "keras", "jax")


def _requirement_names(dist):
    reqs = importlib.metadata.requires(dist) or []
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in reqs}


def test_requirements_name_no_framework():
    assert not _requirement_names("tao-deploy") & set(FRAMEWORKS)


def test_importing_every_module_loads_no_framework():
    modules = [m.name for m in pkgutil.walk_packages(tao_deploy.__path__, "tao_deploy.")]
    if importlib.util.find_spec("tao_convert") is not None:
        import tao_convert

        # __main__ would run the CLI on import
        modules += [
            m.name
            for m in pkgutil.walk_packages(tao_convert.__path__, "tao_convert.")
            if m.name != "tao_convert.__main__"
        ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        # the passes import these lazily: exercise them too
        "import onnxruntime.quantization, onnxruntime.transformers.float16, onnx_graphsurgeon\n"
        f"loaded = [f for f in {FRAMEWORKS!r} if f in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(modules) >= 10


def test_deploy_venv_has_no_framework_installed():
    # The nox `deploy` session installs tao-core, tao-deploy and tao-convert with all their
    # dependencies into a fresh venv; a dependency that pulled a framework would show here.
    import os

    import pytest

    if os.environ.get("TAO_EXPECT_NO_FRAMEWORKS") != "1":
        pytest.skip("only meaningful in the nox deploy venv")
    for name in FRAMEWORKS[:3]:
        assert importlib.util.find_spec(name) is None, f"{name} got installed with tao-deploy"
