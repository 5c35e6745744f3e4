"""DetectNet_v2's command-line flags, kept as TAO documents them (argparse, one parser per task).

    tao model detectnet_v2 train -e spec.txt -r results -k $KEY --gpus 2
    tao model detectnet_v2 export -m model.tlt -k $KEY --data_type int8 --cal_image_dir images/

`build_parser(task)` returns the task's parser; `parse_args(task, argv)` parses and checks a
command line, raising `TaoUserError` with a one-line message on bad input (`-h` still prints
help and exits 0). Nothing here imports a framework; only the export int8 check looks at the
file system (whether an existing calibration cache can stand in for calibration data).

Beyond the documented flags every task takes `-r/--results_dir` (where TAO 5 writes
status.json and logs; required for train), and train keeps `--enable_determinism`, export
`--static_batch_size` and `--target_opset`, as TAO's scripts do.
"""

import argparse
import os
import re

from tao_core.errors import TaoUserError
from tao_core.spec.validate import did_you_mean

NETWORK = "detectnet_v2"
TASKS = ("dataset_convert", "train", "evaluate", "inference", "prune", "calibration_tensorfile", "export")

TLT_MODEL_EXTENSIONS = (".tlt", ".hdf5", ".h5")
ENGINE_EXTENSIONS = (".engine", ".trt", ".plan")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are TaoUserErrors (one line, naming the flag)."""

    def error(self, message):
        raise TaoUserError(f"{self.prog}: {self._explain(message)} (see '{self.prog} -h')")

    def _explain(self, message: str) -> str:
        missing = re.match(r"the following arguments are required: (.*)", message)
        if missing:
            flags = missing.group(1)
            return f"missing required flag{'s' if ',' in flags else ''} {flags}"
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            words = unknown.group(1).split()
            flag = next((w for w in words if w.startswith("-")), words[0])
            options = [s for a in self._actions for s in a.option_strings]
            return f"unknown argument{'s' if len(words) > 1 else ''} {' '.join(words)}{did_you_mean(flag, options)}"
        if message.startswith("argument "):
            return "flag " + message[len("argument ") :]
        return message


# ---------------------------------------------------------------------------------------------
# value types: argparse reports their messages as "argument -x/--long: <message>"


def _integer(text: str, what: str = "an integer", ok=lambda v: True) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _integer(text, "a positive integer", lambda v: v >= 1)


# The oldest ONNX opset ONNX Runtime runs (TensorRT's parser needs 9): an older export could not
# be checked against Keras nor built into an engine. TAO's default is 12; INT8 Q/DQ uses 13.
MIN_ONNX_OPSET = 7


def _opset(text: str) -> int:
    return _integer(text, f"an ONNX opset >= {MIN_ONNX_OPSET} (TAO's default 12)", lambda v: v >= MIN_ONNX_OPSET)


def _non_negative_int(text: str) -> int:
    return _integer(text, "an integer >= 0", lambda v: v >= 0)


def _positive_int_or_all(text: str) -> int:
    return _integer(text, "a positive integer (or -1 for all)", lambda v: v >= 1 or v == -1)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _gpu_indices(text: str) -> list[int]:
    """'0,1' or '0' -> [0, 1] / [0]; `nargs='+'` also allows '0 1' (TAO's own form)."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected GPU indices like 0 or 0,1, got {text!r}")
    out = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected GPU indices like 0 or 0,1, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"expected GPU indices >= 0, got {text!r}")
        out.append(value)
    return out


class _FlatIndices(argparse.Action):
    """Collects `--gpu_index 0,1` / `--gpu_index 0 1` into one flat list of ints."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [i for group in values for i in group])


# ---------------------------------------------------------------------------------------------
# one function per task, adding the task's flags


def _results_dir(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "-r",
        "--results_dir",
        required=required,
        default=None,
        help="folder for the task's outputs, logs and status.json",
    )


def _dataset_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-d",
        "--dataset_export_spec",
        "--dataset-export-spec",
        dest="dataset_export_spec",
        required=True,
        help="dataset export spec (the config for writing the .tfrecord files)",
    )
    p.add_argument("-o", "--output_filename", required=True, help="output filename (prefix of the tfrecord shards)")
    p.add_argument(
        "-f",
        "--validation_fold",
        "--validation-fold",
        dest="validation_fold",
        type=_non_negative_int,
        default=None,
        help="validation fold, 0-based (needed when modifying the training set)",
    )
    _results_dir(p)


def _train(p: argparse.ArgumentParser) -> None:
    p.add_argument("-e", "--experiment_spec_file", required=True, help="experiment spec file")
    _results_dir(p, required=True)
    p.add_argument("-k", "--key", required=True, help="encoding key to save / load .tlt models")
    p.add_argument("-n", "--model_name", default="model", help="name of the final model (default: model)")
    p.add_argument("--gpus", type=_positive_int, default=1, help="number of GPUs / processes to launch (default: 1)")
    p.add_argument(
        "--gpu_index",
        type=_gpu_indices,
        nargs="+",
        action=_FlatIndices,
        default=None,
        help="indices of the GPUs to use, e.g. 0,1 (default: the first --gpus GPUs)",
    )
    p.add_argument("--use_amp", action="store_true", help="enable automatic mixed precision")
    p.add_argument("--log_file", default=None, help="log file (default: stdout)")
    p.add_argument("--enable_determinism", action="store_true", help="make training deterministic (fixed seeds)")


def _evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("-e", "--experiment_spec_file", required=True, help="experiment spec file (the training spec)")
    p.add_argument("-m", "--model", required=True, help=".tlt model or TensorRT engine to evaluate")
    p.add_argument("-k", "--key", default=None, help="key to decrypt the model (needed for a .tlt model)")
    p.add_argument(
        "-f",
        "--framework",
        choices=("tlt", "tensorrt"),
        default=None,
        help="framework to run the model with (default: tlt for .tlt/.hdf5 models, else tensorrt)",
    )
    p.add_argument("--use_training_set", action="store_true", help="evaluate on the training set")
    p.add_argument("--gpu_index", type=_non_negative_int, default=None, help="index of the GPU to run on")
    _results_dir(p)


def _inference(p: argparse.ArgumentParser) -> None:
    p.add_argument("-e", "--inference_spec", required=True, help="inference spec file")
    p.add_argument("-i", "--inference_input", required=True, help="an image or a folder of images")
    p.add_argument(
        "-o", "--inference_output", required=True, help="output folder (images_annotated/ and labels/ inside)"
    )
    p.add_argument("-k", "--enc_key", required=True, help="key to load the model")
    _results_dir(p)


def _prune(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-pm",
        "--pretrained_model",
        "-m",
        "--model",
        dest="pretrained_model",
        required=True,
        help="the model to prune",
    )
    p.add_argument("-o", "--output_file", required=True, help="path of the pruned model")
    p.add_argument("-k", "--key", required=True, help="key to load / save .tlt models")
    p.add_argument(
        "-n",
        "--normalizer",
        choices=("max", "L2"),
        default="max",
        help="max: divide each norm by the layer's largest; L2: by the L2 norm of all (default: max)",
    )
    p.add_argument(
        "-eq",
        "--equalization_criterion",
        choices=("arithmetic_mean", "geometric_mean", "union", "intersection"),
        default="union",
        help="how to equalize the inputs of element-wise / depth-wise layers (default: union)",
    )
    p.add_argument(
        "-pg",
        "--pruning_granularity",
        type=_positive_int,
        default=8,
        help="number of filters removed at a time (default: 8)",
    )
    p.add_argument(
        "-pth",
        "--pruning_threshold",
        type=_non_negative_float,
        default=0.1,
        help="threshold the normalized norm is compared against (default: 0.1)",
    )
    p.add_argument(
        "-nf",
        "--min_num_filters",
        type=_positive_int,
        default=16,
        help="minimum number of filters kept per layer (default: 16)",
    )
    p.add_argument(
        "-el",
        "--excluded_layers",
        nargs="*",
        default=[],
        help="layers not to prune, e.g. -el item1 item2 (default: none)",
    )
    _results_dir(p)


def _calibration_tensorfile(p: argparse.ArgumentParser) -> None:
    p.add_argument("-e", "--experiment_spec_file", required=True, help="training experiment spec file")
    p.add_argument("-o", "--output_path", required=True, help="tensorfile to write")
    p.add_argument(
        "-m",
        "--max_batches",
        type=_positive_int_or_all,
        required=True,
        help="number of batches to serialize (-1: all)",
    )
    p.add_argument("--use_validation_set", action="store_true", help="use the validation set instead of training")
    _results_dir(p)


def _export(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help=".tlt model to export")
    p.add_argument("-k", "--key", required=True, help="key the .tlt model was saved with")
    p.add_argument("-o", "--output_file", default=None, help="exported model (default: ./<model name>.etlt)")
    p.add_argument(
        "-e",
        "--experiment_spec",
        default=None,
        help="experiment spec; lets int8 calibration use the training data loader",
    )
    p.add_argument(
        "--data_type", choices=("fp32", "fp16", "int8"), default="fp32", help="engine data type (default: fp32)"
    )
    p.add_argument(
        "-s", "--strict_type_constraints", action="store_true", help="apply TensorRT strict type constraints (int8)"
    )
    p.add_argument(
        "--gen_ds_config", action="store_true", help="also write a DeepStream nvinfer_config.txt and labels.txt"
    )
    p.add_argument(
        "--cal_data_file", default=None, help="calibration tensorfile (output when --cal_image_dir is given)"
    )
    p.add_argument("--cal_image_dir", default=None, help="folder of images to calibrate with")
    p.add_argument("--cal_cache_file", default="./cal.bin", help="calibration cache file (default: ./cal.bin)")
    p.add_argument("--batches", type=_positive_int, default=10, help="number of calibration batches (default: 10)")
    p.add_argument("--batch_size", type=_positive_int, default=8, help="calibration batch size (default: 8)")
    p.add_argument(
        "--max_batch_size", type=_positive_int, default=16, help="maximum TensorRT engine batch size (default: 16)"
    )
    p.add_argument(
        "--max_workspace_size",
        type=_positive_int,
        default=1 << 30,
        help="maximum TensorRT workspace size in bytes (default: 1073741824)",
    )
    p.add_argument("--engine_file", default=None, help="also write a serialized TensorRT engine here")
    p.add_argument("--verbose", action="store_true", help="verbose logs")
    p.add_argument("--force_ptq", action="store_true", help="force post-training quantization (QAT models)")
    p.add_argument(
        "--static_batch_size",
        type=_integer,
        default=-1,
        help="fixed batch size of the exported model, -1 for dynamic (default: -1)",
    )
    p.add_argument("--target_opset", type=_opset, default=12, help="ONNX opset (default: 12)")
    _results_dir(p)


_BUILDERS = {
    "dataset_convert": (_dataset_convert, "Convert KITTI data to TFRecords."),
    "train": (_train, "Train a DetectNet_v2 model."),
    "evaluate": (_evaluate, "Evaluate a DetectNet_v2 model."),
    "inference": (_inference, "Run DetectNet_v2 inference on images."),
    "prune": (_prune, "Prune a DetectNet_v2 model."),
    "calibration_tensorfile": (_calibration_tensorfile, "Write an INT8 calibration tensorfile."),
    "export": (_export, "Export a DetectNet_v2 model for TensorRT / DeepStream."),
}


def _task_name(task: str) -> str:
    name = task.replace("-", "_")  # the docs also write `dataset-convert`
    if name not in _BUILDERS:
        raise TaoUserError(f"{NETWORK} has no task '{task}'{did_you_mean(name, TASKS)}; tasks: {', '.join(TASKS)}")
    return name


def build_parser(task: str) -> argparse.ArgumentParser:
    """The argparse parser of one DetectNet_v2 task (`dataset-convert` is accepted too)."""
    name = _task_name(task)
    add_flags, description = _BUILDERS[name]
    parser = _Parser(prog=f"{NETWORK} {name}", description=description)
    add_flags(parser)
    return parser


# ---------------------------------------------------------------------------------------------
# checks across flags, after parsing


def _fail(task: str, message: str) -> TaoUserError:
    return TaoUserError(f"{NETWORK} {task}: {message}")


def _check_train(args: argparse.Namespace) -> None:
    if args.gpu_index is None:
        return
    indices = args.gpu_index
    if len(set(indices)) != len(indices):
        raise _fail("train", f"flag --gpu_index: repeated GPU index in {indices}")
    if len(indices) != args.gpus:
        raise _fail(
            "train",
            f"flag --gpu_index lists {len(indices)} GPU(s) {indices} but --gpus is {args.gpus}; "
            f"pass --gpus {len(indices)} or fewer indices",
        )


def _check_evaluate(args: argparse.Namespace) -> None:
    model = args.model.lower()
    is_tlt = model.endswith(TLT_MODEL_EXTENSIONS)
    is_engine = model.endswith(ENGINE_EXTENSIONS)
    if args.framework is None:
        args.framework = "tlt" if is_tlt else "tensorrt"
    elif args.framework == "tensorrt" and is_tlt:
        raise _fail("evaluate", f"flag -f/--framework tensorrt needs a TensorRT engine, got model {args.model!r}")
    elif args.framework == "tlt" and is_engine:
        raise _fail("evaluate", f"flag -f/--framework tlt needs a .tlt model, got engine {args.model!r}")
    if args.framework == "tlt" and model.endswith(".tlt") and not args.key:
        raise _fail("evaluate", f"missing required flag -k/--key: needed to decrypt the .tlt model {args.model!r}")


def _check_export(args: argparse.Namespace) -> None:
    if args.data_type != "int8":
        return
    if args.cal_image_dir or args.cal_data_file or args.experiment_spec:
        return
    if args.cal_cache_file and os.path.isfile(args.cal_cache_file):
        return  # an existing calibration cache is used as is
    raise _fail(
        "export",
        "flag --data_type int8 needs calibration data: pass --cal_image_dir, --cal_data_file, "
        f"-e/--experiment_spec (training data loader) or an existing --cal_cache_file "
        f"({args.cal_cache_file!r} does not exist)",
    )


_CHECKS = {"train": _check_train, "evaluate": _check_evaluate, "export": _check_export}


def check_args(task: str, args: argparse.Namespace) -> None:
    """The cross-flag checks of `parse_args` alone (export runs them once it has read the model:
    a QAT model needs no calibration data for --data_type int8)."""
    check = _CHECKS.get(_task_name(task))
    if check:
        check(args)


def parse_args(task: str, argv: list[str], check: bool = True) -> argparse.Namespace:
    """Parse and check a task's command line (`check=False`: parse only, see `check_args`).

    Bad input raises `TaoUserError` naming the flag and the problem; `-h/--help` prints the
    help and raises SystemExit(0) as argparse does.
    """
    name = _task_name(task)
    args = build_parser(name).parse_args(list(argv))
    if check:
        check_args(name, args)
    return args
