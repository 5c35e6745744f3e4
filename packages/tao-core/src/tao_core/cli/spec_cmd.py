"""`tao spec validate|template|schema <network> <task>`: work on specs without data or weights."""

import json

from tao_core.cli.guard import UserArgumentParser
from tao_core.errors import SpecError, SpecErrors, TaoUserError
from tao_core.specs import get_spec


def _parser() -> UserArgumentParser:
    p = UserArgumentParser(prog="tao spec", description="Check or print a network's spec.")
    p.add_argument("action", choices=["validate", "template", "schema"])
    p.add_argument("network")
    p.add_argument("task")
    p.add_argument("-e", "--experiment_spec_file", help="spec file (validate)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (validate)")
    return p


def spec_command(argv: list[str]) -> int:
    try:
        args = _parser().parse_intermixed_args(argv)
    except SystemExit as stop:  # --help
        return int(stop.code or 0)
    spec = get_spec(args.network)
    if args.action == "template":
        print(spec.template(args.task), end="")
        return 0
    if args.action == "schema":
        print(json.dumps(spec.json_schema(args.task), indent=2))
        return 0
    if not args.experiment_spec_file:
        raise TaoUserError("tao spec validate: -e SPEC is required")
    try:
        spec.load(args.task, args.experiment_spec_file, args.overrides)
    except (SpecError, SpecErrors) as err:
        errors = err.errors if isinstance(err, SpecErrors) else [err]
        for e in errors:
            print(f"invalid: {e}")
        return 1
    print("valid")
    return 0
