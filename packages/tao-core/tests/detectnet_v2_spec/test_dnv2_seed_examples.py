"""Every prototxt example printed in the TAO DetectNet_v2 documentation loads unchanged.

The files under data/ are the documentation's examples copied verbatim. Examples that are a
single block load with `partial=True` (the task's other blocks are absent); the two table-cell
snippets and the `validation_data_source` snippet are fragments of a block, so the test wraps
them in their parent block. Two examples are not valid protobuf text as printed (a `..` elision
and a bare `<placeholder>`): they load as printed with a warning, to the same message as the
adjusted copies (one edit each).
"""

import logging
from pathlib import Path

import pytest

from tao_core.proto.detectnet_v2.evaluation_pb2 import EvaluationConfig
from tao_core.proto.detectnet_v2.inference_pb2 import TensorRTConfig
from tao_core.proto.textspec import tolerate_documentation_artifacts
from tao_core.specs.detectnet_v2 import SPEC

DATA = Path(__file__).parent / "data"

# file, task, wrapper for fragments of a block (None: the file is loaded as is)
EXAMPLES = [
    ("dataset_convert_kitti.txt", "dataset_convert", None),
    ("model_config.txt", "train", None),
    ("model_objective_set_cell.txt", "train", "model_config {{ objective_set {{ {} }} }}"),
    ("bbox_rasterizer_config.txt", "train", None),
    ("postprocessing_config.txt", "train", None),
    ("cost_function_config.txt", "train", None),
    ("training_config.txt", "train", None),
    ("training_cost_scaling_cell.txt", "train", "training_config {{ {} }}"),
    ("augmentation_config.txt", "train", None),
    ("evaluation_config.txt", "evaluate", None),
    ("dataset_config.txt", "train", None),
    ("dataset_validation_data_source.txt", "evaluate", "dataset_config {{ {} }}"),
    ("inferencer_config.txt", "inference", None),
    ("bbox_handler_config.txt", "inference", None),
    ("dataset_config_evaluate.txt", "evaluate", None),
]


@pytest.mark.parametrize("name,task,wrapper", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_seed_example_loads(name, task, wrapper):
    path = DATA / name
    if wrapper is None:
        msg = SPEC.load(task, path, partial=True)
    else:
        msg = SPEC.load(task, text=wrapper.format(path.read_text()), partial=True)
    assert msg.ByteSize() > 0


def test_model_config_example_values():
    m = SPEC.load("train", DATA / "model_config.txt", partial=True).model_config
    assert (m.arch, m.num_layers, list(m.freeze_blocks)) == ("resnet", 18, [0.0, 1.0])
    assert m.all_projections and m.use_batch_norm and not m.use_pooling
    assert m.objective_set.HasField("cov") and m.objective_set.bbox.scale == 35.0


def test_postprocessing_example_keeps_fractional_min_samples():
    # The documentation writes dbscan_min_samples: 0.05, so the field must be a float.
    pp = SPEC.load("train", DATA / "postprocessing_config.txt", partial=True).postprocessing_config
    assert sorted(pp.target_class_config) == ["car", "cyclist", "pedestrian"]
    assert pp.target_class_config["car"].clustering_config.dbscan_min_samples == pytest.approx(0.05)


def test_inference_examples_values():
    spec = SPEC.load("inference", DATA / "inferencer_config.txt", partial=True)
    trt = spec.inferencer_config.tensorrt_config
    assert list(spec.inferencer_config.target_classes) == ["car", "cyclist", "pedestrian"]
    assert trt.parser == TensorRTConfig.ETLT and trt.backend_data_type == TensorRTConfig.INT8
    assert trt.calibrator_config.batch_size == 16
    bh = SPEC.load("inference", DATA / "bbox_handler_config.txt", partial=True).bbox_handler_config
    assert bh.classwise_bbox_handler_config["car"].bbox_color.G == 255
    assert set(bh.classwise_bbox_handler_config) == {"car", "default"}


def test_evaluation_example_mode():
    ev = SPEC.load("evaluate", DATA / "evaluation_config.txt", partial=True).evaluation_config
    assert ev.average_precision_mode == EvaluationConfig.INTEGRATE
    assert ev.evaluation_box_config["car"].maximum_height == 9999


def test_validation_data_source_example_sets_oneof():
    text = "dataset_config {{ {} }}".format((DATA / "dataset_validation_data_source.txt").read_text())
    d = SPEC.load("evaluate", text=text, partial=True).dataset_config
    assert d.WhichOneof("dataset_split_type") == "validation_data_source"


@pytest.mark.parametrize(
    "verbatim,adjusted,task,warning",
    [
        # As printed, `pretrained_model_file: <path_to_model_file>` is not a string literal.
        ("model_config_verbatim.txt", "model_config.txt", "train", "placeholder <path_to_model_file> read as a string"),
        # The evaluate section elides mappings with `..` lines, which protobuf text cannot hold.
        ("dataset_config_evaluate_verbatim.txt", "dataset_config_evaluate.txt", "evaluate", "'..' (an elision"),
    ],
)
def test_documentation_artifacts_load_with_a_warning(verbatim, adjusted, task, warning, caplog):
    with caplog.at_level(logging.WARNING):
        as_printed = SPEC.load(task, DATA / verbatim, partial=True)
    assert warning in caplog.text and verbatim in caplog.text
    assert as_printed == SPEC.load(task, DATA / adjusted, partial=True)


def test_placeholder_rewrite_never_touches_message_literals():
    text = 'model_config { arch: "resnet" }\ntraining_config: < batch_size_per_gpu: 4 >\n'
    assert tolerate_documentation_artifacts(text) == text


@pytest.mark.parametrize(
    "verbatim,adjusted,removed,added",
    [
        (
            "model_config_verbatim.txt",
            "model_config.txt",
            ["  pretrained_model_file: <path_to_model_file>"],
            ['  pretrained_model_file: "<path_to_model_file>"'],
        ),
        ("dataset_config_evaluate_verbatim.txt", "dataset_config_evaluate.txt", ["  .."] * 3, []),
    ],
)
def test_adjusted_copies_differ_only_by_the_documented_edit(verbatim, adjusted, removed, added):
    old = (DATA / verbatim).read_text().splitlines()
    new = (DATA / adjusted).read_text().splitlines()
    assert sorted(set(old) - set(new)) == sorted(set(removed))
    assert [x for x in new if x not in old] == added
    assert len(old) - len(removed) + len(added) == len(new)
