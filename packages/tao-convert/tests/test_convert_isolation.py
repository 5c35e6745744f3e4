"""tao-convert never imports torch or tensorflow (an edge / deploy-only install)."""

import importlib.metadata
import re
import subprocess
import sys

FRAMEWORKS = ("torch", "tensorflow", "tf_keras", "keras", "jax")


def test_no_framework_requirement_or_import():
    reqs = importlib.metadata.requires("tao-convert") or []
    assert not {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in reqs} & set(FRAMEWORKS)
    code = (
        "import sys, tao_convert.cli as c\n"
        "c.build_parser(); import tao_deploy, onnxruntime.quantization, onnxruntime.transformers.float16\n"
        f"assert not [f for f in {FRAMEWORKS!r} if f in sys.modules]\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
