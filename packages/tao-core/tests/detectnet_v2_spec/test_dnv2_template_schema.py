"""Templates are complete valid specs; the JSON Schema follows the message descriptors."""

import subprocess
import sys

import pytest
from google.protobuf import json_format, text_format

from tao_core.specs.detectnet_v2 import NETWORK, SPEC, TASKS


@pytest.mark.parametrize("task", list(TASKS))
def test_template_is_a_complete_valid_spec(task):
    spec = SPEC.load(task, text=SPEC.template(task))  # not partial: required blocks present
    assert isinstance(spec, TASKS[task])
    assert SPEC.validate(task, spec) == []


def test_load_without_file_gives_the_template():
    assert SPEC.load("inference") == text_format.Parse(SPEC.template("inference"), TASKS["inference"]())


def test_tasks_and_network():
    assert NETWORK == "detectnet_v2" and SPEC.network == NETWORK
    assert set(TASKS) == {
        "dataset_convert",
        "train",
        "evaluate",
        "prune",
        "export",
        "calibration_tensorfile",
        "inference",
    }
    assert TASKS["train"] is TASKS["export"] is TASKS["calibration_tensorfile"]


def test_registered_in_specs_registry():
    from tao_core.specs import get_spec

    assert get_spec("detectnet_v2") is SPEC


def test_schema_shapes():
    s = SPEC.json_schema("train")
    assert s["$schema"].startswith("https://json-schema.org/") and s["additionalProperties"] is False
    props = s["properties"]
    assert props["random_seed"] == {"type": "integer", "minimum": 0}
    ev = props["evaluation_config"]["properties"]
    assert ev["average_precision_mode"]["enum"] == ["SAMPLE", "INTEGRATE"]
    assert ev["average_precision_mode"]["default"] == "SAMPLE"
    overlap = ev["minimum_detection_ground_truth_overlap"]
    assert overlap == {"type": "object", "additionalProperties": {"type": "number"}}
    box = ev["evaluation_box_config"]["additionalProperties"]["properties"]
    assert box["maximum_height"] == {"type": "number", "default": 9999.0}
    cost = props["cost_function_config"]["properties"]["target_classes"]
    assert cost["type"] == "array" and cost["items"]["properties"]["name"] == {"type": "string"}
    assert props["model_config"]["properties"]["freeze_blocks"] == {"type": "array", "items": {"type": "number"}}
    lr = props["training_config"]["properties"]["learning_rate"]
    assert {"not": {"required": ["soft_start_annealing_schedule", "early_stopping_annealing_schedule"]}} in lr["allOf"]


def test_inference_and_convert_schemas():
    inf = SPEC.json_schema("inference")["properties"]["inferencer_config"]
    assert inf["properties"]["tensorrt_config"]["properties"]["backend_data_type"]["enum"] == ["FP32", "FP16", "INT8"]
    assert {"not": {"required": ["tlt_config", "tensorrt_config"]}} in inf["allOf"]
    conv = SPEC.json_schema("dataset_convert")["properties"]
    assert conv["kitti_config"]["properties"]["num_shards"]["default"] == 10


def _conforms(value, schema, path="") -> list[str]:
    """A small JSON Schema check (object/array/enum/type) so the test needs no jsonschema."""
    kind = schema.get("type")
    if kind == "object":
        problems = []
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key, schema.get("additionalProperties"))
            if not isinstance(sub, dict):
                problems.append(f"{path}.{key}: not allowed")
            else:
                problems += _conforms(item, sub, f"{path}.{key}")
        return problems
    if kind == "array":
        return [p for i, v in enumerate(value) for p in _conforms(v, schema["items"], f"{path}.{i}")]
    if "enum" in schema:
        return [] if value in schema["enum"] else [f"{path}: {value!r} not in enum"]
    types = {"integer": int, "number": (int, float), "boolean": bool, "string": str}
    return [] if isinstance(value, types[kind]) else [f"{path}: {value!r} is not {kind}"]


@pytest.mark.parametrize("task", ["train", "inference", "dataset_convert"])
def test_templates_conform_to_their_schema(task):
    as_dict = json_format.MessageToDict(SPEC.load(task), preserving_proto_field_name=True)
    assert _conforms(as_dict, SPEC.json_schema(task)) == []


def test_no_torch_or_tensorflow_import():
    code = (
        "import sys; from tao_core.specs.detectnet_v2 import SPEC; SPEC.load('train'); "
        "print([m for m in ('torch', 'tensorflow') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
