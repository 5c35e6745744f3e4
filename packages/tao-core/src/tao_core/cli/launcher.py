"""The `tao` command.

    tao model  <network> <task> -e SPEC [-r DIR] [-k KEY] [--gpus N] [--num_nodes N] [key=value ...]
    tao deploy <network> <task> -e SPEC ...
    tao spec   validate|template|schema <network> <task> [-e SPEC] [key=value ...]

Networks come from the entry-point groups `tao.model` and `tao.deploy`, so a network appears
exactly when the package that implements it is installed. A network tao-core has a spec for but
no installed package runs is named with the package that provides it (PROVIDERS).
"""

import sys
from importlib.metadata import PackageNotFoundError, entry_points, version

from tao_core.cli.guard import run_guarded
from tao_core.errors import TaoUserError
from tao_core.spec.validate import did_you_mean

GROUPS = {"model": "tao.model", "deploy": "tao.deploy"}

# Which distribution runs each spec network's tasks, per group, and how to install it from the
# repository root (the README's "Install one stage alone"). A test holds every spec network to it.
PROVIDERS = {
    "model": {
        "dino": "tao-pytorch",
        "deformable_detr": "tao-pytorch",
        "oneformer": "tao-pytorch",
        "detectnet_v2": "tao-tf",
    },
    "deploy": {
        "dino": "tao-deploy",
        "deformable_detr": "tao-deploy",
        "oneformer": "tao-deploy",
        "detectnet_v2": "tao-deploy",
    },
}
INSTALL_HINTS = {
    "tao-pytorch": "pip install -c constraints/torch.txt ./packages/tao-core ./packages/tao-pytorch",
    "tao-tf": "pip install ./packages/tao-core ./packages/tao-tf",
    "tao-deploy": "pip install ./packages/tao-core ./packages/tao-deploy ./packages/tao-convert",
}


def installed_networks(group: str) -> dict:
    """network name -> entry point, for one group ("model" or "deploy")."""
    return {ep.name: ep for ep in entry_points(group=GROUPS[group])}


def installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def not_installed_message(group: str, name: str, found: dict) -> str:
    """Why `tao <group> <name>` cannot run: the network is unknown (did-you-mean), or tao-core knows
    it but its package is missing (install hint), or that package's installed release lacks it."""
    installed = ", ".join(sorted(found)) or "none"
    provider = PROVIDERS[group].get(name)
    if provider is None:
        known = sorted(set(found) | set(PROVIDERS[group]))
        return f"tao {group}: unknown network '{name}'{did_you_mean(name, known)}; installed: {installed}"
    have = installed_version(provider)
    role = "training" if group == "model" else "deployment"
    if have is None:
        return (f"tao {group} {name}: the {role} package of {name}, {provider}, is not installed; install it "
                f"with `{INSTALL_HINTS[provider]}` (from the repository root). Installed {group} networks: "
                f"{installed}")
    return (f"tao {group} {name}: {name} is provided by {provider}, but the installed {provider} {have} does not "
            f"include it yet (its spec is known: `tao spec template {name} train`). Installed {group} networks: "
            f"{installed}")


def _missing_networks(group: str, found: dict) -> list[str]:
    out = []
    for name, provider in PROVIDERS[group].items():
        if name not in found:
            have = installed_version(provider)
            out.append(f"{name} ({provider}: {'not installed' if have is None else 'not in ' + have + ' yet'})")
    return out


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
        missing = _missing_networks(group, found)
        if missing:
            lines.append(f"  not available: {', '.join(missing)}")
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
        raise TaoUserError(not_installed_message(group, name, found))
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
