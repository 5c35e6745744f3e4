"""Test sessions of the monorepo: one per package, plus lint.

    nox                 # the default set: lint + every package's tests (what CI runs)
    nox -s core         # one package
    nox -R -s core      # reuse the session's venv without reinstalling (fast local iteration)

Each session installs its package (not editable, so packaging mistakes show) with its test
extras into a venv of its own. Sessions with torch add `-c constraints/torch.txt` so the local
CPU build of torch 2.13.0 is used and nothing can pull torchvision.
"""

import os

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "core", "deploy", "pytorch", "tf", "e2e"]
nox.options.reuse_venv = "no"

# uv does not read pip's config: point it at the local folder holding the CPU torch wheel.
TORCH_INSTALL = [
    *(["--find-links", "/opt/wheels"] if os.path.isdir("/opt/wheels") else []),
    "-c", "constraints/torch.txt",
]


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")
    session.run("ruff", "check", "packages", "benchmarks", "tests", "examples", "noxfile.py")


@nox.session
def core(session: nox.Session) -> None:
    """tao-core alone: its venv has neither torch nor tensorflow, which a test asserts."""
    session.install("./packages/tao-core[test]")
    session.run(
        "pytest", "packages/tao-core/tests", "-q", *session.posargs,
        env={"TAO_EXPECT_NO_FRAMEWORKS": "1"},
    )


@nox.session
def deploy(session: nox.Session) -> None:
    """tao-deploy and tao-convert in a venv without torch or tensorflow (edge, deploy-only installs)."""
    session.install("./packages/tao-core", "./packages/tao-deploy[test]", "./packages/tao-convert[test]")
    session.run(
        "pytest", "packages/tao-deploy/tests", "packages/tao-convert/tests", "-q", *session.posargs,
        env={"TAO_EXPECT_NO_FRAMEWORKS": "1"},
    )


@nox.session
def pytorch(session: nox.Session) -> None:
    """tao-pytorch on the CPU build of torch 2.13.0 (uv needs the local wheel folder pointed out)."""
    session.install(*TORCH_INSTALL, "./packages/tao-core", "./packages/tao-pytorch[test]")
    session.run("pytest", "packages/tao-pytorch/tests", "-q", *session.posargs)


@nox.session
def tf(session: nox.Session) -> None:
    """tao-tf (DetectNet_v2) on TensorFlow 2.21 + tf_keras in a venv without torch, which a test asserts."""
    session.install("./packages/tao-core[test]", "./packages/tao-deploy", "./packages/tao-tf[test]")
    session.run(
        "pytest", "packages/tao-tf/tests", "-q", *session.posargs,
        env={"TAO_EXPECT_NO_TORCH": "1"},
    )


@nox.session
def e2e(session: nox.Session) -> None:
    """Across packages: models exported by tao-pytorch, built and evaluated by tao-deploy."""
    session.install(
        *TORCH_INSTALL, "./packages/tao-core", "./packages/tao-pytorch[test]", "./packages/tao-deploy",
        "./packages/tao-convert",
    )
    session.run("pytest", "tests", "-q", *session.posargs)
