"""DetectNet_v2's argparse flags: the documented command lines parse, bad ones fail clearly."""

import shlex

import pytest

from tao_core.cli.detectnet_v2_args import TASKS, build_parser, parse_args
from tao_core.errors import TaoUserError

# the documented flags of each task: (option strings, required, default)
FLAGS = {
    "dataset_convert": [
        (("-d", "--dataset_export_spec", "--dataset-export-spec"), True, None),
        (("-o", "--output_filename"), True, None),
        (("-f", "--validation_fold", "--validation-fold"), False, None),
        (("-r", "--results_dir"), False, None),
    ],
    "train": [
        (("-e", "--experiment_spec_file"), True, None),
        (("-r", "--results_dir"), True, None),
        (("-k", "--key"), True, None),
        (("-n", "--model_name"), False, "model"),
        (("--gpus",), False, 1),
        (("--gpu_index",), False, None),
        (("--use_amp",), False, False),
        (("--log_file",), False, None),
        (("--enable_determinism",), False, False),
    ],
    "evaluate": [
        (("-e", "--experiment_spec_file"), True, None),
        (("-m", "--model"), True, None),
        (("-k", "--key"), False, None),
        (("-f", "--framework"), False, None),
        (("--use_training_set",), False, False),
        (("--gpu_index",), False, None),
        (("-r", "--results_dir"), False, None),
    ],
    "inference": [
        (("-e", "--inference_spec"), True, None),
        (("-i", "--inference_input"), True, None),
        (("-o", "--inference_output"), True, None),
        (("-k", "--enc_key"), True, None),
        (("-r", "--results_dir"), False, None),
    ],
    "prune": [
        (("-pm", "--pretrained_model", "-m", "--model"), True, None),
        (("-o", "--output_file"), True, None),
        (("-k", "--key"), True, None),
        (("-n", "--normalizer"), False, "max"),
        (("-eq", "--equalization_criterion"), False, "union"),
        (("-pg", "--pruning_granularity"), False, 8),
        (("-pth", "--pruning_threshold"), False, 0.1),
        (("-nf", "--min_num_filters"), False, 16),
        (("-el", "--excluded_layers"), False, []),
        (("-r", "--results_dir"), False, None),
    ],
    "calibration_tensorfile": [
        (("-e", "--experiment_spec_file"), True, None),
        (("-o", "--output_path"), True, None),
        (("-m", "--max_batches"), True, None),
        (("--use_validation_set",), False, False),
        (("-r", "--results_dir"), False, None),
    ],
    "export": [
        (("-m", "--model"), True, None),
        (("-k", "--key"), True, None),
        (("-o", "--output_file"), False, None),
        (("-e", "--experiment_spec"), False, None),
        (("--data_type",), False, "fp32"),
        (("-s", "--strict_type_constraints"), False, False),
        (("--gen_ds_config",), False, False),
        (("--cal_data_file",), False, None),
        (("--cal_image_dir",), False, None),
        (("--cal_cache_file",), False, "./cal.bin"),
        (("--batches",), False, 10),
        (("--batch_size",), False, 8),
        (("--max_batch_size",), False, 16),
        (("--max_workspace_size",), False, 1 << 30),
        (("--engine_file",), False, None),
        (("--verbose",), False, False),
        (("--force_ptq",), False, False),
        (("--static_batch_size",), False, -1),
        (("--target_opset",), False, 12),
        (("-r", "--results_dir"), False, None),
    ],
}

CHOICES = {
    ("evaluate", "--framework"): ("tlt", "tensorrt"),
    ("prune", "--normalizer"): ("max", "L2"),
    ("prune", "--equalization_criterion"): ("arithmetic_mean", "geometric_mean", "union", "intersection"),
    ("export", "--data_type"): ("fp32", "fp16", "int8"),
}


def args_of(text: str) -> list[str]:
    return shlex.split(text)


def test_tasks_are_the_documented_ones():
    assert TASKS == ("dataset_convert", "train", "evaluate", "inference", "prune", "calibration_tensorfile", "export")
    assert set(FLAGS) == set(TASKS)


# --- every documented flag, exactly ---------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_flags_are_exactly_the_documented_ones(task):
    parser = build_parser(task)
    actions = [a for a in parser._actions if a.dest != "help"]
    got = {tuple(a.option_strings): (a.required, a.default) for a in actions}
    want = {names: (required, default) for names, required, default in FLAGS[task]}
    assert got == want


@pytest.mark.parametrize("task", TASKS)
def test_each_flag_name_resolves_to_one_action(task):
    parser = build_parser(task)
    for names, _, _ in FLAGS[task]:
        assert len({id(parser._option_string_actions[n]) for n in names}) == 1, names


@pytest.mark.parametrize(("task", "flag"), list(CHOICES))
def test_choices(task, flag):
    action = build_parser(task)._option_string_actions[flag]
    assert tuple(action.choices) == CHOICES[(task, flag)]


def test_dataset_convert_hyphen_spelling_of_the_task():
    assert build_parser("dataset-convert").prog == "detectnet_v2 dataset_convert"
    args = parse_args("dataset-convert", args_of("--dataset-export-spec s.txt -o out/tfr --validation-fold 0"))
    assert (args.dataset_export_spec, args.output_filename, args.validation_fold) == ("s.txt", "out/tfr", 0)


# --- the documented sample command lines ----------------------------------------------------

SAMPLES = [
    (
        "dataset_convert",
        "-d /specs/kitti_to_tfrecords.txt -o /data/tfrecords/kitti_trainval/kitti_trainval",
        dict(
            dataset_export_spec="/specs/kitti_to_tfrecords.txt",
            output_filename="/data/tfrecords/kitti_trainval/kitti_trainval",
            validation_fold=None,
            results_dir=None,
        ),
    ),
    (
        "train",
        "-e /specs/train.txt -r /results/unpruned -k tlt_encode -n resnet18_detector --gpus 2",
        dict(
            experiment_spec_file="/specs/train.txt",
            results_dir="/results/unpruned",
            key="tlt_encode",
            model_name="resnet18_detector",
            gpus=2,
            gpu_index=None,
            use_amp=False,
            log_file=None,
            enable_determinism=False,
        ),
    ),
    (
        "train",
        "-k tlt_encode -r /results -e /specs/train.txt --gpus 2 --gpu_index 0,3 --use_amp --log_file /results/log.txt"
        " --enable_determinism",
        dict(
            experiment_spec_file="/specs/train.txt",
            results_dir="/results",
            key="tlt_encode",
            model_name="model",
            gpus=2,
            gpu_index=[0, 3],
            use_amp=True,
            log_file="/results/log.txt",
            enable_determinism=True,
        ),
    ),
    (
        "evaluate",
        "-e /specs/train.txt -m /results/weights/resnet18_detector.tlt -k tlt_encode",
        dict(
            experiment_spec_file="/specs/train.txt",
            model="/results/weights/resnet18_detector.tlt",
            key="tlt_encode",
            framework="tlt",
            use_training_set=False,
            gpu_index=None,
            results_dir=None,
        ),
    ),
    (
        "evaluate",
        "-e /specs/train.txt -m /export/resnet_18.engine --use_training_set --gpu_index 1 -r /results/eval",
        dict(
            experiment_spec_file="/specs/train.txt",
            model="/export/resnet_18.engine",
            key=None,
            framework="tensorrt",
            use_training_set=True,
            gpu_index=1,
            results_dir="/results/eval",
        ),
    ),
    (
        "inference",
        "-e /specs/inference.txt -i /data/test/images -o /results/inference -k tlt_encode",
        dict(
            inference_spec="/specs/inference.txt",
            inference_input="/data/test/images",
            inference_output="/results/inference",
            enc_key="tlt_encode",
            results_dir=None,
        ),
    ),
    (
        "prune",
        "-m /workspace/output/weights/resnet_003.tlt -o /workspace/output/weights/resnet_003_pruned.tlt"
        " -eq union -pth 0.7 -k $KEY",
        dict(
            pretrained_model="/workspace/output/weights/resnet_003.tlt",
            output_file="/workspace/output/weights/resnet_003_pruned.tlt",
            key="$KEY",
            normalizer="max",
            equalization_criterion="union",
            pruning_granularity=8,
            pruning_threshold=0.7,
            min_num_filters=16,
            excluded_layers=[],
            results_dir=None,
        ),
    ),
    (
        "prune",
        "-pm in.tlt -o out.tlt -k k -n L2 -eq geometric_mean -pg 4 -pth 0.05 -nf 8 -el conv1 block_1a_conv_1",
        dict(
            pretrained_model="in.tlt",
            output_file="out.tlt",
            key="k",
            normalizer="L2",
            equalization_criterion="geometric_mean",
            pruning_granularity=4,
            pruning_threshold=0.05,
            min_num_filters=8,
            excluded_layers=["conv1", "block_1a_conv_1"],
            results_dir=None,
        ),
    ),
    (
        "calibration_tensorfile",
        "-e $SPECS_DIR/classification_retrain_spec.cfg -m 10 -o $USER_EXPERIMENT_DIR/export/calibration.tensor",
        dict(
            experiment_spec_file="$SPECS_DIR/classification_retrain_spec.cfg",
            output_path="$USER_EXPERIMENT_DIR/export/calibration.tensor",
            max_batches=10,
            use_validation_set=False,
            results_dir=None,
        ),
    ),
]

EXPORT_DEFAULTS = dict(
    model=None,
    key=None,
    output_file=None,
    experiment_spec=None,
    data_type="fp32",
    strict_type_constraints=False,
    gen_ds_config=False,
    cal_data_file=None,
    cal_image_dir=None,
    cal_cache_file="./cal.bin",
    batches=10,
    batch_size=8,
    max_batch_size=16,
    max_workspace_size=1073741824,
    engine_file=None,
    verbose=False,
    force_ptq=False,
    static_batch_size=-1,
    target_opset=12,
    results_dir=None,
)

E = "$USER_EXPERIMENT_DIR"
SAMPLES += [
    (
        "export",
        f"-e {E}/experiment_dir_retrain/experiment_spec.txt"
        f" -m {E}/experiment_dir_retrain/weights/resnet18_detector_pruned.tlt"
        f" -o {E}/experiment_dir_final/resnet18_detector.etlt -k $KEY"
        f" --cal_data_file {E}/experiment_dir_final/calibration.tensor --data_type int8 --batches 10"
        f" --cal_cache_file {E}/experiment_dir_final/calibration.bin"
        f" --engine_file {E}/experiment_dir_final/resnet_18.engine",
        dict(
            EXPORT_DEFAULTS,
            experiment_spec=f"{E}/experiment_dir_retrain/experiment_spec.txt",
            model=f"{E}/experiment_dir_retrain/weights/resnet18_detector_pruned.tlt",
            output_file=f"{E}/experiment_dir_final/resnet18_detector.etlt",
            key="$KEY",
            cal_data_file=f"{E}/experiment_dir_final/calibration.tensor",
            data_type="int8",
            cal_cache_file=f"{E}/experiment_dir_final/calibration.bin",
            engine_file=f"{E}/experiment_dir_final/resnet_18.engine",
        ),
    ),
    (
        "export",
        f"-m {E}/detectnet_v2/model.tlt -o {E}/detectnet_v2/model.int8.etlt"
        " -e $SPECS_DIR/detectnet_v2_kitti_retrain_spec.txt --key $KEY"
        f" --cal_image_dir {E}/data/KITTI/val/image_2 --data_type int8 --batch_size 8 --batches 10"
        f" --cal_data_file {E}/data/detectnet_v2/cal.tensorfile --cal_cache_file {E}/data/detectnet_v2/cal.bin"
        f" --engine_file {E}/data/detectnet_v2/detection.trt --gen_ds_config",
        dict(
            EXPORT_DEFAULTS,
            model=f"{E}/detectnet_v2/model.tlt",
            output_file=f"{E}/detectnet_v2/model.int8.etlt",
            experiment_spec="$SPECS_DIR/detectnet_v2_kitti_retrain_spec.txt",
            key="$KEY",
            cal_image_dir=f"{E}/data/KITTI/val/image_2",
            data_type="int8",
            cal_data_file=f"{E}/data/detectnet_v2/cal.tensorfile",
            cal_cache_file=f"{E}/data/detectnet_v2/cal.bin",
            engine_file=f"{E}/data/detectnet_v2/detection.trt",
            gen_ds_config=True,
        ),
    ),
    (
        "export",
        "-m model.tlt -k nvidia_tlt",
        dict(EXPORT_DEFAULTS, model="model.tlt", key="nvidia_tlt"),
    ),
    (
        "export",
        "-m model.tlt -k k -o m.etlt --data_type fp16 -s --max_batch_size 4 --max_workspace_size 2048"
        " --verbose --force_ptq --static_batch_size 1 --target_opset 13 -r /results/export",
        dict(
            EXPORT_DEFAULTS,
            model="model.tlt",
            key="k",
            output_file="m.etlt",
            data_type="fp16",
            strict_type_constraints=True,
            max_batch_size=4,
            max_workspace_size=2048,
            verbose=True,
            force_ptq=True,
            static_batch_size=1,
            target_opset=13,
            results_dir="/results/export",
        ),
    ),
]


@pytest.mark.parametrize(("task", "line", "expected"), SAMPLES, ids=[f"{s[0]}-{i}" for i, s in enumerate(SAMPLES)])
def test_documented_sample_parses(task, line, expected):
    assert vars(parse_args(task, args_of(line))) == expected


def test_every_task_has_a_sample():
    assert {s[0] for s in SAMPLES} == set(TASKS)


# --- bad input: one-line TaoUserError naming the flag ---------------------------------------

VALID = {
    "dataset_convert": "-d spec.txt -o out",
    "train": "-e spec.txt -r results -k key",
    "evaluate": "-e spec.txt -m model.tlt -k key",
    "inference": "-e infer.txt -i images -o out -k key",
    "prune": "-pm model.tlt -o pruned.tlt -k key",
    "calibration_tensorfile": "-e spec.txt -o cal.tensor -m 10",
    "export": "-m model.tlt -k key",
}


def fails(task: str, line: str) -> str:
    with pytest.raises(TaoUserError) as info:
        parse_args(task, args_of(line))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"detectnet_v2 {task}: ")
    return message


@pytest.mark.parametrize("task", TASKS)
def test_minimal_valid_line_parses(task):
    parse_args(task, args_of(VALID[task]))


def _drop(line: str, flag: str) -> str:
    words = args_of(line)
    i = words.index(flag)
    return shlex.join(words[:i] + words[i + 2 :])


MISSING = [(task, names) for task, flags in FLAGS.items() for names, required, _ in flags if required]


@pytest.mark.parametrize(("task", "names"), MISSING, ids=[f"{t}{n[0]}" for t, n in MISSING])
def test_missing_required_flag(task, names):
    line = _drop(VALID[task], names[0])
    message = fails(task, line)
    assert "missing required flag" in message
    assert "/".join(n for n in names if n in (names[0], names[1])) in message


def test_missing_several_required_flags():
    message = fails("train", "-k key")
    assert "missing required flags -e/--experiment_spec_file, -r/--results_dir" in message


@pytest.mark.parametrize(
    ("task", "extra", "flag", "allowed"),
    [
        ("evaluate", "-f trt", "-f/--framework", "tensorrt"),
        ("prune", "-eq mean", "-eq/--equalization_criterion", "arithmetic_mean"),
        ("prune", "-n l1", "-n/--normalizer", "L2"),
        ("export", "--data_type int4", "--data_type", "int8"),
    ],
)
def test_invalid_choice(task, extra, flag, allowed):
    message = fails(task, f"{VALID[task]} {extra}")
    assert f"flag {flag}" in message
    assert "invalid choice" in message
    assert allowed in message


@pytest.mark.parametrize(
    ("task", "extra", "flag", "problem"),
    [
        ("train", "--gpus two", "--gpus", "expected a positive integer, got 'two'"),
        ("train", "--gpus 0", "--gpus", "expected a positive integer, got '0'"),
        ("train", "--gpu_index a,b", "--gpu_index", "expected GPU indices"),
        ("evaluate", "--gpu_index -1", "--gpu_index", "expected an integer >= 0"),
        ("dataset_convert", "-f one", "-f/--validation_fold/--validation-fold", "expected an integer >= 0, got 'one'"),
        ("prune", "-pg 2.5", "-pg/--pruning_granularity", "expected a positive integer, got '2.5'"),
        ("prune", "-nf x", "-nf/--min_num_filters", "expected a positive integer, got 'x'"),
        ("prune", "-pth high", "-pth/--pruning_threshold", "expected a number, got 'high'"),
        ("prune", "-pth -0.5", "-pth/--pruning_threshold", "expected a number >= 0"),
        ("calibration_tensorfile", "-m ten", "-m/--max_batches", "got 'ten'"),
        ("calibration_tensorfile", "-m 0", "-m/--max_batches", "got '0'"),
        ("export", "--batches 1.5", "--batches", "expected a positive integer, got '1.5'"),
        ("export", "--batch_size 0", "--batch_size", "expected a positive integer, got '0'"),
        ("export", "--max_workspace_size 1GB", "--max_workspace_size", "got '1GB'"),
        ("export", "--target_opset x", "--target_opset", "got 'x'"),
        ("export", "--target_opset 6", "--target_opset", "expected an ONNX opset >= 7 (TAO's default 12), got '6'"),
        ("export", "--static_batch_size b", "--static_batch_size", "expected an integer, got 'b'"),
    ],
)
def test_bad_number(task, extra, flag, problem):
    message = fails(task, f"{VALID[task]} {extra}")
    assert f"flag {flag}: " in message
    assert problem in message


def test_calibration_all_batches():
    assert parse_args("calibration_tensorfile", args_of("-e s -o o -m -1")).max_batches == -1


def test_flag_without_value():
    message = fails("train", "-r results -k key -e")
    assert "flag -e/--experiment_spec_file: expected one argument" in message


def test_unknown_flag_suggests_the_close_one():
    message = fails("prune", f"{VALID['prune']} --pruning_treshold 0.5")
    assert "unknown argument" in message and "--pruning_treshold" in message
    assert "did you mean '--pruning_threshold'" in message


def test_unknown_task():
    with pytest.raises(TaoUserError, match="has no task 'exprt'.*did you mean 'export'"):
        build_parser("exprt")


# --- cross-flag checks ----------------------------------------------------------------------


def test_int8_without_calibration_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./cal.bin here
    message = fails("export", "-m model.tlt -k key --data_type int8")
    assert "--data_type int8 needs calibration data" in message
    assert "--cal_image_dir" in message and "--cal_data_file" in message and "--cal_cache_file" in message
    message = fails("export", f"-m model.tlt -k key --data_type int8 --cal_cache_file {tmp_path}/none.bin")
    assert "none.bin' does not exist" in message


@pytest.mark.parametrize(
    "source", ["--cal_image_dir images", "--cal_data_file cal.tensor", "-e spec.txt", "--cal_cache_file cache.bin"]
)
def test_int8_with_a_calibration_source(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache.bin").write_bytes(b"TRT-8000-EntropyCalibration2\n")
    args = parse_args("export", args_of(f"-m model.tlt -k key --data_type int8 {source}"))
    assert args.data_type == "int8"


def test_int8_uses_an_existing_default_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cal.bin").write_bytes(b"TRT-8000-EntropyCalibration2\n")
    assert parse_args("export", args_of("-m model.tlt -k key --data_type int8")).cal_cache_file == "./cal.bin"


def test_fp_export_needs_no_calibration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for data_type in ("fp32", "fp16"):
        parse_args("export", args_of(f"-m model.tlt -k key --data_type {data_type}"))


def test_evaluate_key_needed_for_tlt_model():
    message = fails("evaluate", "-e spec.txt -m model.tlt")
    assert "missing required flag -k/--key" in message and "model.tlt" in message
    # an engine or an unencrypted model needs no key
    assert parse_args("evaluate", args_of("-e spec.txt -m model.engine")).framework == "tensorrt"
    assert parse_args("evaluate", args_of("-e spec.txt -m model.hdf5")).framework == "tlt"


def test_evaluate_framework_must_fit_the_model():
    assert "needs a TensorRT engine" in fails("evaluate", "-e s -m model.tlt -k k -f tensorrt")
    assert "needs a .tlt model" in fails("evaluate", "-e s -m model.engine -f tlt")
    explicit = parse_args("evaluate", args_of("-e s -m model_file -f tlt -k k"))
    assert explicit.framework == "tlt"


def test_train_gpu_index_must_match_gpus():
    assert parse_args("train", args_of(f"{VALID['train']} --gpu_index 2")).gpu_index == [2]
    assert parse_args("train", args_of(f"{VALID['train']} --gpus 2 --gpu_index 0 1")).gpu_index == [0, 1]
    message = fails("train", f"{VALID['train']} --gpu_index 0,1")
    assert "--gpu_index lists 2 GPU(s) [0, 1] but --gpus is 1" in message
    assert "repeated GPU index" in fails("train", f"{VALID['train']} --gpus 2 --gpu_index 1,1")


# --- help --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_exits_zero(task, flag, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(task, [flag])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: detectnet_v2 {task}")
    for names, _, _ in FLAGS[task]:
        assert names[-1] in out or names[0] in out


def test_help_wins_over_missing_flags(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args("export", ["--data_type", "int8", "-h"])
    assert info.value.code == 0
