"""tao-core must run where neither torch nor tensorflow exists (deploy-only and edge installs)."""

import importlib
import importlib.metadata
import os
import pkgutil
import re
import subprocess
import sys

import pytest

import tao_core

FRAMEWORKS = ("torch", "tensorflow", "tf_keras", "keras", "jax")


def test_requirements_name_no_framework():
    reqs = importlib.metadata.requires("tao-core") or []
    names = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in reqs}
    assert not names & set(FRAMEWORKS), names


def test_importing_every_module_loads_no_framework():
    modules = [m.name for m in pkgutil.walk_packages(tao_core.__path__, "tao_core.")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"loaded = [f for f in {FRAMEWORKS!r} if f in sys.modules]\n"
        "print(len(sys.modules)); assert not loaded, loaded\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(modules) > 20


@pytest.mark.skipif(os.environ.get("TAO_EXPECT_NO_FRAMEWORKS") != "1", reason="only meaningful in the nox core venv")
def test_core_venv_has_no_framework_installed():
    # The nox `core` session installs tao-core with its dependencies into a fresh venv: if any
    # dependency pulled torch or tensorflow in, it would be importable here.
    for name in FRAMEWORKS[:3]:
        assert importlib.util.find_spec(name) is None, f"{name} got installed with tao-core"
