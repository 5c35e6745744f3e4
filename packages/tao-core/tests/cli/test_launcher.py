"""The `tao` launcher, `tao spec`, and a network's console script, run as real subprocesses.

A throw-away plugin distribution (a dist-info folder with entry_points.txt on PYTHONPATH)
provides a 'dino' network the way tao-pytorch will: this exercises the real entry-point
discovery, spec loading, results folder, status.json and error reporting.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
import json, os
from tao_core.cli.network import ArgparseNetworkCli, YamlNetworkCli
from tao_core.errors import TaoUserError

def train(cfg, ctx):
    with open(os.path.join(ctx.results_dir, "seen.json"), "w") as f:
        json.dump({"num_gpus": cfg.train.num_gpus, "num_nodes": cfg.train.num_nodes,
                   "num_epochs": cfg.train.num_epochs, "key": ctx.key, "task": ctx.task}, f)
    ctx.status.write("RUNNING", "epoch done", epoch=0, max_epoch=1, kpi={"val_mAP": 0.5})

def evaluate(cfg, ctx):
    raise TaoUserError("checkpoint not found: /nowhere.pth")

def dn_train(argv):
    print("detectnet train", argv)
    return 0

CLI = YamlNetworkCli("dino", {"train": "tao_test_plugin:train", "evaluate": "tao_test_plugin:evaluate"})
DN = ArgparseNetworkCli("detectnet_v2", {"train": "tao_test_plugin:dn_train"})
'''

SPEC = """
results_dir: {results}
dataset:
  num_classes: 2
  train_data_sources:
    - image_dir: /data/train/images
      json_file: /data/train.json
  val_data_sources:
    - image_dir: /data/val/images
      json_file: /data/val.json
train:
  num_epochs: 3
"""


@pytest.fixture()
def plugin_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "tao_test_plugin.py").write_text(PLUGIN)
    info = site / "tao_test_plugin-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tao-test-plugin\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text(
        "[tao.model]\ndino = tao_test_plugin:CLI\ndetectnet_v2 = tao_test_plugin:DN\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("TAO_DEBUG", None)
    return env


def tao(*args, env=None):
    code = "import sys; from tao_core.cli.launcher import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def script(target, *args, env=None):
    code = f"import sys; from tao_test_plugin import {target}; {target}.main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def write_spec(tmp_path, results):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(results=results))
    return path


def test_help_lists_only_installed_networks(plugin_env):
    bare = tao("--help")
    assert bare.returncode == 0
    assert "model networks installed:" in bare.stdout and "(none" in bare.stdout
    with_plugin = tao("--help", env=plugin_env)
    assert "dino" in with_plugin.stdout and "train, evaluate" in with_plugin.stdout
    assert "detectnet_v2" in with_plugin.stdout


def test_model_train_runs_task_with_flags_and_writes_results(tmp_path, plugin_env):
    spec = write_spec(tmp_path, tmp_path / "from_spec")
    out = tmp_path / "res"
    r = tao("model", "dino", "train", "-e", str(spec), "-r", str(out), "-k", "secret",
            "--gpus", "2", "--num_nodes", "3", "train.num_epochs=7", env=plugin_env)
    assert r.returncode == 0, r.stderr
    seen = json.loads((out / "train" / "seen.json").read_text())
    assert seen == {"num_gpus": 2, "num_nodes": 3, "num_epochs": 7, "key": "secret", "task": "train"}
    lines = [json.loads(line) for line in (out / "train" / "status.json").read_text().splitlines()]
    assert [line["status"] for line in lines] == ["STARTED", "RUNNING", "SUCCESS"]
    assert lines[1]["kpi"] == {"val_mAP": 0.5}
    assert "num_epochs: 7" in (out / "train" / "experiment.yaml").read_text()
    assert (out / "train" / "train.log").exists()
    assert not (tmp_path / "from_spec").exists()  # -r wins over the spec's results_dir


def test_console_script_matches_tao_model(tmp_path, plugin_env):
    spec = write_spec(tmp_path, tmp_path / "res")
    r = script("CLI", "train", "-e", str(spec), env=plugin_env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "res" / "train" / "seen.json").exists()


def test_user_error_is_one_line_and_recorded_as_failure(tmp_path, plugin_env):
    spec = write_spec(tmp_path, tmp_path / "res")
    r = tao("model", "dino", "evaluate", "-e", str(spec), "evaluate.checkpoint=/x.pth", env=plugin_env)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == "error: checkpoint not found: /nowhere.pth"
    assert "Traceback" not in r.stderr
    last = json.loads((tmp_path / "res" / "evaluate" / "status.json").read_text().splitlines()[-1])
    assert last["status"] == "FAILURE" and last["message"] == "checkpoint not found: /nowhere.pth"


def test_debug_flag_and_env_show_traceback(tmp_path, plugin_env):
    spec = write_spec(tmp_path, tmp_path / "res")
    r = tao("model", "dino", "evaluate", "-e", str(spec), "evaluate.checkpoint=/x.pth", "--debug", env=plugin_env)
    assert r.returncode == 1 and "Traceback" in r.stderr
    env = dict(plugin_env, TAO_DEBUG="1")
    r = tao("model", "dino", "evaluate", "-e", str(spec), "evaluate.checkpoint=/x.pth", env=env)
    assert r.returncode == 1 and "Traceback" in r.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["model", "dnio", "train"], "unknown network 'dnio' (did you mean 'dino'?)"),
        (["model", "dino", "trian", "-e", "x.yaml"], "has no task 'trian' (did you mean 'train'?)"),
        (["modle"], "unknown command 'modle' (did you mean 'model'?)"),
        (["model", "dino", "train"], "the following arguments are required: -e/--experiment_spec_file"),
        (["model", "dino", "train", "-e", "/no/such/spec.yaml"], "spec file not found: /no/such/spec.yaml"),
        (["model", "dino", "train", "-e", "SPEC", "--gpus", "two"], "argument --gpus: invalid int value: 'two'"),
        (["model", "dino", "train", "-e", "SPEC", "train.num_epochs"], "expected a key=value override"),
        (["model", "dino", "train", "-e", "SPEC", "train.num_epoch=3"], "did you mean 'num_epochs'"),
        (["model", "dino", "train", "-e", "SPEC", "--gpus", "0"], "train.num_gpus: got 0"),
        (["model", "dino", "train", "-e", "SPEC", "--num_nodes", "many"], "argument --num_nodes: invalid int value"),
        (["model", "dino", "train", "-e", "SPEC", "--num_nodes", "0"], "train.num_nodes: got 0"),
        (["model", "dino", "train", "-e", "SPEC", "-r"], "argument -r/--results_dir: expected one argument"),
        (["model", "dino", "train", "-e", "SPEC", "--bogus"], "unrecognized arguments: --bogus"),
        (["spec", "validate", "dino"], "the following arguments are required: task"),
        (["spec", "explain", "dino", "train"], "invalid choice: 'explain'"),
    ],
)
def test_bad_command_lines_give_one_clear_error(tmp_path, plugin_env, args, expected):
    spec = str(write_spec(tmp_path, tmp_path / "res"))
    r = tao(*[spec if a == "SPEC" else a for a in args], env=plugin_env)
    assert r.returncode == 1
    assert expected in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_results_dir_is_a_spec_error(tmp_path, plugin_env):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("results_dir: {results}\n", ""))
    r = tao("model", "dino", "train", "-e", str(spec), env=plugin_env)
    assert r.returncode == 1 and "results_dir: got None" in r.stderr


def test_argparse_network_gets_its_own_flags(plugin_env):
    r = tao("model", "detectnet_v2", "train", "-e", "spec.txt", "-r", "out", "-k", "key", "-n", "model", env=plugin_env)
    assert r.returncode == 0, r.stderr
    assert "detectnet train ['-e', 'spec.txt', '-r', 'out', '-k', 'key', '-n', 'model']" in r.stdout


def test_spec_validate_template_schema(tmp_path):
    spec = write_spec(tmp_path, tmp_path / "res")
    ok = tao("spec", "validate", "dino", "train", "-e", str(spec))
    assert ok.returncode == 0 and ok.stdout.strip() == "valid"
    bad = tao("spec", "validate", "dino", "train", "-e", str(spec), "model.num_queries=-1", "train.optim.lr=abc")
    assert bad.returncode == 1
    assert "model.num_queries: got -1" in bad.stdout and "train.optim.lr: got 'abc'" in bad.stdout
    template = tao("spec", "template", "dino", "train")
    assert template.returncode == 0 and "num_queries: 900" in template.stdout
    schema = json.loads(tao("spec", "schema", "dino", "train").stdout)
    assert schema["properties"]["model"]["properties"]["num_queries"]["default"] == 900
    unknown = tao("spec", "template", "dinoo", "train")
    assert unknown.returncode == 1 and "did you mean 'dino'" in unknown.stderr


def test_spec_validate_never_reads_data(tmp_path):
    # every path in the spec is absent: validate must still answer `valid` (no data touched)
    spec = write_spec(tmp_path, "/definitely/not/here")
    r = tao("spec", "validate", "dino", "train", "-e", str(spec))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not Path("/definitely").exists()


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    spec = tmp_path / "broken.yaml"
    spec.write_text(textwrap.dedent("""\
        model:
          num_queries: [1, 2
        train: {}
        """))
    r = tao("spec", "validate", "dino", "train", "-e", str(spec))
    assert r.returncode == 1
    assert f"{spec}: invalid YAML at line" in r.stderr


def _have(distribution):
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(distribution)
        return True
    except PackageNotFoundError:
        return False


def test_every_spec_network_names_its_packages():
    from tao_core.cli.launcher import INSTALL_HINTS, PROVIDERS
    from tao_core.specs import NETWORKS

    for group in ("model", "deploy"):
        assert set(PROVIDERS[group]) == set(NETWORKS), group
        assert set(PROVIDERS[group].values()) <= set(INSTALL_HINTS)


@pytest.mark.parametrize(
    "group, network, package",
    [("model", "oneformer", "tao-pytorch"), ("model", "detectnet_v2", "tao-tf"), ("deploy", "detectnet_v2", "tao-deploy")],
)
def test_known_network_without_its_package_names_the_package(group, network, package):
    # `tao --help` lists every spec network; `tao model <it> --help` must say what to install,
    # not "unknown network"
    from tao_core.cli.launcher import installed_networks

    if network in installed_networks(group):
        pytest.skip(f"{network} is installed here")
    r = tao(group, network, "--help")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "unknown network" not in r.stderr
    assert package in r.stderr and network in r.stderr
    if _have(package):
        assert f"the installed {package}" in r.stderr and "does not include it yet" in r.stderr
    else:
        assert f"{package}, is not installed" in r.stderr and "pip install" in r.stderr
    assert f"{network} ({package}:" in tao("--help").stdout  # and --help says it is not available


def test_unknown_network_is_still_unknown(plugin_env):
    r = tao("model", "yolo", "train", env=plugin_env)
    assert r.returncode == 1 and "unknown network 'yolo'" in r.stderr
