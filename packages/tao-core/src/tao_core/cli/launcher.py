"""The `tao` command.

    tao model  <network> <task> -e SPEC [-r DIR] [-k KEY] [--gpus N] [--num_nodes N] [key=value ...]
    tao deploy <network> <task> -e SPEC ...
    tao spec   validate|template|schema <network> <task> [-e SPEC] [key=value ...]

Networks come from the entry-point groups `tao.model` and `tao.deploy`, so a network appears
exactly when the package that implements it is installed.
"""

import sys
from importlib.metadata import entry_points

from tao_core.cli.guard import run_guarded
from tao_core.errors import TaoUserError
from tao_core.spec.validate import did_you_mean

GROUPS = {"model": "tao.model", "deploy": "tao.deploy"}


def installed_networks(group: str) -> dict:
    """network name -> entry point, for one group ("model" or "deploy")."""
    return {ep.name: ep for ep in entry_points(group=GROUPS[group])}


def usage() -> str:
    lines = [
        "usage: tao {model,deploy,spec} ...",
        "",
        "  tao model  <network> <task> -e SPEC [-r RESULTS_DIR] [-k KEY] [--gpus N] [--num_nodes N] [key=value ...]",
        "  tao deploy <network> <task> -e SPEC [-r RESULTS_DIR] [-k KEY] [key=value ...]",
        "  tao spec   validate <network> <task> -e SPEC [key=value ...]   check a spec without touching data",
        "  tao spec   template <network> <task>                           print a complete default spec",
        "  tao spec   schema   <network> <task>                           print the spec's JSON Schema",
        "",
        "options: --debug (or TAO_DEBUG=1) shows full tracebacks",
        "",
    ]
    for group in GROUPS:
        found = installed_networks(group)
        lines.append(f"{group} networks installed:")
        if not found:
            lines.append(f"  (none: install a package that provides '{group}' networks, e.g. tao-pytorch)")
        for name in sorted(found):
            tasks = _tasks_of(found[name])
            lines.append(f"  {name:<18} {tasks}")
        lines.append("")
    from tao_core.specs import NETWORKS

    lines.append(f"spec networks: {', '.join(NETWORKS)}")
    return "\n".join(lines)


def _tasks_of(ep) -> str:
    try:
        return ", ".join(ep.load().tasks)
    except Exception as err:  # a broken plugin must not hide the others from --help
        return f"(cannot load: {type(err).__name__}: {err})"


def _run_network(group: str, argv: list[str]) -> int:
    found = installed_networks(group)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 1
    name = argv[0]
    if name not in found:
        installed = ", ".join(sorted(found)) or "none"
        raise TaoUserError(
            f"tao {group}: unknown network '{name}'{did_you_mean(name, found)}; installed: {installed}"
        )
    cli = found[name].load()
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(f"usage: tao {group} {name} <task> [args]\n\ntasks: {', '.join(cli.tasks)}")
        return 0 if len(argv) >= 2 else 1
    return cli.run(argv[1], argv[2:])


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 1
    command, rest = argv[0], argv[1:]
    if command in GROUPS:
        return _run_network(command, rest)
    if command == "spec":
        from tao_core.cli.spec_cmd import spec_command

        return spec_command(rest)
    raise TaoUserError(f"unknown command '{command}'{did_you_mean(command, [*GROUPS, 'spec'])}; see tao --help")


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_guarded(_main, sys.argv[1:] if argv is None else argv))
