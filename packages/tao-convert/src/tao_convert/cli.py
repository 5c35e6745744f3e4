"""`tao-converter`: TAO's converter command line on tao-deploy's builder.

    tao-converter [-h] -k KEY -d DIMS -o OUTPUTS [-c CACHE] [-e ENGINE] [-b CAL_BATCH]
                  [-m MAX_BATCH] [-t fp32|fp16|int8] [-w WORKSPACE] [-i nchw|nhwc|nc]
                  [-p name,min,opt,max ...] [-s] [-u DLA] input_file

Flags and defaults are TAO's: -c ./cal.bin, -e ./saved.engine, -b 8, -m 16, -t fp32,
-w 1073741824 (bytes), -i nchw. Differences, each deliberate:
- `-k` is needed only for encrypted inputs (.etlt); a plain .onnx has nothing to decrypt.
- `-t int8` reads the calibration cache given by -c; tao-converter has no calibration data,
  so a missing cache is an error (make one with `tao deploy <net> gen_trt_engine`).
  `-b` is then informational and recorded in the engine metadata.
- Without `-p`, the batch spans 1..-m with opt = -m (the old converter tuned for max batch).
- `-s` and `-u` are refused where the backend cannot honour them (see tao_deploy.backends),
  never silently ignored.
- `--backend auto|tensorrt|onnxruntime` (an addition) picks the backend; auto = TensorRT when
  usable. The chosen backend is logged.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tao_core.cli.guard import UserArgumentParser, run_guarded
from tao_core.errors import TaoUserError

PROG = "tao-converter"
LAYOUT_RANK = {"nchw": 3, "nhwc": 3, "nc": 1}


def build_parser() -> argparse.ArgumentParser:
    # UserArgumentParser: a bad flag or value (-t int9) is a one-line user error, exit 1, as for every command
    p = UserArgumentParser(prog=PROG, description="Build an inference engine from an .onnx or .etlt model.")
    p.add_argument("input_file", help="the .etlt (with -k) or .onnx model exported by TAO")
    p.add_argument("-k", dest="key", help="key the .etlt model was encrypted with")
    p.add_argument("-d", dest="dims", required=True, help="comma-separated input dims without batch, e.g. 3,544,960")
    p.add_argument("-o", dest="outputs", required=True, help="comma-separated output names")
    p.add_argument("-c", dest="cache", default="./cal.bin", help="INT8 calibration cache (default ./cal.bin)")
    p.add_argument("-e", dest="engine", default="./saved.engine", help="engine file to write (default ./saved.engine)")
    p.add_argument(
        "-b", dest="cal_batch", type=int, default=8, help="batch size the calibration cache was made with (8)"
    )
    p.add_argument("-m", dest="max_batch", type=int, default=16, help="maximum batch size (16)")
    p.add_argument("-t", dest="data_type", default="fp32", choices=["fp32", "fp16", "int8"], help="engine precision")
    p.add_argument("-w", dest="workspace", type=int, default=1 << 30, help="workspace size in bytes (1<<30)")
    p.add_argument("-i", dest="order", default="nchw", choices=list(LAYOUT_RANK), help="input dims order (nchw)")
    p.add_argument(
        "-p",
        dest="profiles",
        action="append",
        default=[],
        metavar="name,min,opt,max",
        help="optimization profile of one input, shapes as NxCxHxW; repeat per input",
    )
    p.add_argument("-s", dest="strict", action="store_true", help="TensorRT strict type constraints")
    p.add_argument("-u", dest="dla_core", type=int, default=None, help="DLA core (Jetson)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "tensorrt", "onnxruntime"],
        help="engine backend (auto: TensorRT when usable, else ONNX Runtime)",
    )
    return p


def parse_dims(text: str, order: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise TaoUserError(f"-d {text!r}: expected comma-separated integers, e.g. 3,544,960") from None
    if any(d <= 0 for d in dims):
        raise TaoUserError(f"-d {text!r}: every dimension must be > 0")
    if len(dims) != LAYOUT_RANK[order]:
        raise TaoUserError(
            f"-d {text!r}: -i {order} takes {LAYOUT_RANK[order]} dims (without the batch), got {len(dims)}"
        )
    return dims


def parse_profile_arg(text: str):
    """'name,1x3x544x960,8x3x544x960,16x3x544x960' -> (name, ShapeRange)."""
    from tao_deploy.engine.profile import ShapeRange, parse_shape

    parts = text.split(",")
    if len(parts) != 4 or not parts[0]:
        raise TaoUserError(f"-p {text!r}: expected <input name>,<min>,<opt>,<max> with shapes like 1x3x544x960")
    name, *shapes = parts
    lo, opt, hi = (parse_shape(s) for s in shapes)
    if not len(lo) == len(opt) == len(hi):
        raise TaoUserError(f"-p {text!r}: min, opt and max must have the same rank")
    for i, (a, b, c) in enumerate(zip(lo, opt, hi)):
        if not a <= b <= c:
            raise TaoUserError(f"-p {text!r}: dim {i} must satisfy min <= opt <= max, got {a}, {b}, {c}")
    return name, ShapeRange(lo, opt, hi)


def convert(args: argparse.Namespace):
    from tao_deploy import Calibration, build_engine
    from tao_deploy.engine.onnx_io import input_specs, load_onnx
    from tao_deploy.engine.profile import batch_profile

    src = Path(args.input_file)
    if src.suffix == ".etlt" and not args.key:
        raise TaoUserError(f"{src}: an .etlt model is encrypted; pass its key with -k")
    dims = parse_dims(args.dims, args.order)
    outputs = [o for o in args.outputs.split(",") if o]
    if not outputs:
        raise TaoUserError("-o: give at least one output name")
    for flag, value in (("-m", args.max_batch), ("-b", args.cal_batch), ("-w", args.workspace)):
        if value <= 0:
            raise TaoUserError(f"{flag} must be > 0, got {value}")
    explicit = dict(parse_profile_arg(p) for p in args.profiles)
    calibration = None
    if args.data_type == "int8":
        if not Path(args.cache).is_file():
            raise TaoUserError(
                f"-t int8 needs an existing calibration cache (-c, default ./cal.bin): {args.cache} not found. "
                "tao-converter has no calibration data; create the cache with `tao deploy <network> gen_trt_engine` "
                "(cal_cache_file) or the network's export --cal_cache_file"
            )
        calibration = Calibration(cache_file=args.cache)

    model = load_onnx(src, args.key)
    inputs = input_specs(model)
    logging.info("Detected %d inputs and %d output network tensors.", len(inputs), len(outputs))
    unknown = sorted(set(explicit) - {s.name for s in inputs})
    if unknown:
        raise TaoUserError(f"-p names input(s) {unknown}; the model's inputs are {[s.name for s in inputs]}")
    rest = [s for s in inputs if s.name not in explicit]
    if len(rest) > 1:
        raise TaoUserError(
            f"the model has {len(inputs)} inputs; give a -p profile for each of {[s.name for s in rest]}"
        )
    profile = dict(explicit)
    if rest:
        profile.update(batch_profile(rest, 1, args.max_batch, args.max_batch, {rest[0].name: dims}))
    return build_engine(
        model,
        args.engine,
        args.data_type,
        profile=profile,
        calibration=calibration,
        backend=args.backend,
        workspace_mib=args.workspace / 2**20,
        outputs=outputs,
        dla_core=args.dla_core,
        strict_types=args.strict,
        metadata={"source": src.name, "input_order": args.order, "cal_batch_size": args.cal_batch, "tool": PROG},
    )


def main(argv: list[str] | None = None) -> int:
    """Exit status as every command of the project (tao_core.cli.guard): 0, 1 for a user error
    (one line "error: ..."), 128 + N when stopped by signal N."""
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s", stream=sys.stderr)
    return run_guarded(_run, sys.argv[1:] if argv is None else list(argv))


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    info = convert(args)
    logging.info(
        "Engine written to %s (%s, %s %s)", info.path, info.precision.upper(), info.backend, info.backend_version
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
