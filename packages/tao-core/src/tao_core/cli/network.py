"""Command lines of one network: `tao model dino train -e spec.yaml ...` and `dino train -e ...`.

A package makes a network available by declaring an entry point in the group `tao.model` (or
`tao.deploy`) whose object is a `YamlNetworkCli` or `ArgparseNetworkCli`, and a console script
pointing at that object's `main`:

    [project.entry-points."tao.model"]
    dino = "tao_pytorch.dino.cli:CLI"
    [project.scripts]
    dino = "tao_pytorch.dino.cli:CLI.main"

Tasks are named "module:function" strings, imported only when run, so `tao --help` stays fast
and never imports a framework.
"""

import argparse
import importlib
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from tao_core.cli.guard import UserArgumentParser, run_guarded
from tao_core.errors import SpecError, TaoUserError
from tao_core.spec.validate import did_you_mean


def import_object(target: str) -> Any:
    """Import "package.module:attr.attr"."""
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


@dataclass
class TaskContext:
    """What a task function receives beside its config."""

    network: str
    task: str
    results_dir: str  # the task's own folder: <results_dir>/<task>
    key: str | None
    status: Any  # tao_core.results.StatusLogger
    argv: list = field(default_factory=list)
    experiment: Any = None  # tao_core.results.run_dir.ExperimentRecord: .write() once the task starts


def redacted_config(cfg: Any, key: str | None):
    """The spec as saved in experiment.yaml: the encryption key never written."""
    from omegaconf import OmegaConf

    from tao_core.crypto import redact_secrets

    return OmegaConf.create(redact_secrets(OmegaConf.to_container(cfg, resolve=True), [key] if key else []))


class _NetworkCliBase:
    network: str
    tasks: dict

    def resolve_task(self, task: str) -> Callable:
        if task not in self.tasks:
            raise TaoUserError(
                f"{self.network} has no task '{task}'{did_you_mean(task, self.tasks)}; "
                f"tasks: {', '.join(self.tasks)}"
            )
        return import_object(self.tasks[task])

    def main(self, argv: list[str] | None = None) -> None:
        """Console-script entry: `<network> <task> args...`."""
        argv = sys.argv[1:] if argv is None else argv
        sys.exit(run_guarded(self._dispatch, argv))

    def _dispatch(self, argv: list[str]) -> int:
        if not argv or argv[0] in ("-h", "--help"):
            print(f"usage: {self.network} <task> [args]\n\ntasks: {', '.join(self.tasks)}")
            return 0 if argv else 1
        return self.run(argv[0], argv[1:])

    def run(self, task: str, argv: list[str]) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


class ArgparseNetworkCli(_NetworkCliBase):
    """A network whose tasks parse their own flags (DetectNet_v2 keeps TAO's argparse flags).

    Each task is a "module:function" taking argv and returning an exit code.
    """

    def __init__(self, network: str, tasks: dict[str, str], description: str = ""):
        self.network, self.tasks, self.description = network, dict(tasks), description

    def run(self, task: str, argv: list[str]) -> int:
        return int(self.resolve_task(task)(argv) or 0)


class YamlNetworkCli(_NetworkCliBase):
    """A YAML-spec network: parses `-e -r -k --gpus --num_nodes key=value`, loads and validates
    the spec, prepares <results_dir>/<task>/ (experiment.yaml, status.json, log) and calls
    the task function `fn(cfg, ctx: TaskContext)`.
    """

    def __init__(self, network: str, tasks: dict[str, str], description: str = "", spec_network: str | None = None):
        self.network, self.tasks, self.description = network, dict(tasks), description
        self.spec_network = spec_network or network

    def parser(self, task: str) -> UserArgumentParser:
        p = UserArgumentParser(prog=f"{self.network} {task}", description=self.description)
        p.add_argument("-e", "--experiment_spec_file", required=True, help="YAML spec file")
        p.add_argument("-r", "--results_dir", help="results folder (overrides results_dir of the spec)")
        p.add_argument("-k", "--key", help="key to encrypt / decrypt model files")
        p.add_argument("--gpus", type=int, help="number of GPUs (sets <task>.num_gpus)")
        p.add_argument("--num_nodes", type=int, help="number of nodes (sets <task>.num_nodes)")
        p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.num_epochs=5")
        return p

    def parse(self, task: str, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
        """Parse the flags and return (args, overrides in the order they take effect)."""
        args = self.parser(task).parse_intermixed_args(argv)
        for item in args.overrides:
            if "=" not in item:
                raise TaoUserError(f"argument '{item}': expected a key=value override, e.g. train.num_epochs=5")
        overrides = list(args.overrides)
        if args.results_dir:
            overrides.append(f"results_dir={args.results_dir}")
        if args.key:
            overrides.append(f"encryption_key={args.key}")
        for flag, name in ((args.gpus, "num_gpus"), (args.num_nodes, "num_nodes")):
            if flag is not None:
                overrides.append(f"{task}.{name}={flag}")
        return args, overrides

    def load_config(self, task: str, argv: list[str]):
        from tao_core.specs import get_spec

        args, overrides = self.parse(task, argv)
        spec = get_spec(self.spec_network)
        cfg = spec.load(task, args.experiment_spec_file, overrides)
        return args, cfg

    def run(self, task: str, argv: list[str]) -> int:
        from tao_core.results import setup_task_logging, task_run
        from tao_core.results.run_dir import ExperimentRecord, prepare_task_dir
        from tao_core.results.status import redact_task_logs
        from tao_core.spec import save_experiment

        fn = self.resolve_task(task)
        args, cfg = self.load_config(task, argv)
        results_dir = cfg.get("results_dir")
        if not results_dir:
            raise SpecError("results_dir", None, "a folder for the results: set results_dir in the spec or pass -r")
        task_dir = prepare_task_dir(results_dir, task)  # one-line error if unusable; stale temporaries removed
        key = args.key or cfg.get("encryption_key")
        section = cfg.get(task)
        setup_task_logging(results_dir, task, verbose=bool(section is not None and section.get("verbose")))
        redact_task_logs([key])
        # experiment.yaml (key redacted) is written once the task starts, never by a run failing its checks
        experiment = ExperimentRecord(lambda: save_experiment(redacted_config(cfg, key), results_dir, task))
        with task_run(results_dir, task, network=self.network) as status:
            ctx = TaskContext(self.network, task, task_dir, key, status, argv, experiment)
            fn(cfg, ctx)
            experiment.write()
        return 0
