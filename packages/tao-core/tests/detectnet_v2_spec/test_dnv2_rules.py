"""A bad input for every rule: each SpecError names the field path, the bad value and what is allowed."""

import pytest

from tao_core.errors import SpecError, SpecErrors, TaoUserError
from tao_core.specs.detectnet_v2 import SPEC

TRAIN = SPEC.template("train")
INFER = SPEC.template("inference")
CONVERT = SPEC.template("dataset_convert")


def errors_of(task, text=None, path=None, overrides=(), partial=False) -> list[SpecError]:
    with pytest.raises((SpecError, SpecErrors)) as err:
        SPEC.load(task, path, overrides, text=text, partial=partial)
    return err.value.errors if isinstance(err.value, SpecErrors) else [err.value]


def only_error(*args, **kwargs) -> SpecError:
    errors = errors_of(*args, **kwargs)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def without_class(text: str, block: str, name: str) -> str:
    """Drop class `name` from one per-class block of the train template."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, x in enumerate(lines) if x.startswith(block))
    if block == "cost_function_config":
        first = next(i for i in range(start, len(lines)) if f'name: "{name}"' in lines[i]) - 1
    else:
        first = next(i for i in range(start, len(lines)) if f'key: "{name}"' in lines[i]) - 1
    depth, end = 0, first
    for end in range(first, len(lines)):
        depth += lines[end].count("{") - lines[end].count("}")
        if depth == 0:
            break
    return "".join(lines[:first] + lines[end + 1 :])


# --------------------------------------------------------------------------- input size


@pytest.mark.parametrize("field,value", [("output_image_width", 1000), ("output_image_height", 540)])
def test_input_size_must_be_multiple_of_16(field, value):
    old = {"output_image_width": "960", "output_image_height": "544"}[field]
    e = only_error("train", text=TRAIN.replace(f"{field}: {old}", f"{field}: {value}"))
    assert e.path == f"augmentation_config.preprocessing.{field}" and e.value == value
    assert "multiple of 16" in e.expected


def test_input_size_rule_applies_to_overrides_too():
    e = only_error("train", overrides=["augmentation_config.preprocessing.output_image_width=961"])
    assert e.path == "augmentation_config.preprocessing.output_image_width" and e.value == 961


def test_inference_size_must_be_multiple_of_16():
    e = only_error("inference", text=INFER.replace("image_width: 1248", "image_width: 1250"))
    assert e.path == "inferencer_config.image_width" and e.value == 1250


# --------------------------------------------------------------------------- class names


@pytest.mark.parametrize(
    "block,path",
    [
        ("cost_function_config", "cost_function_config.target_classes"),
        ("bbox_rasterizer_config", "bbox_rasterizer_config.target_class_config"),
        ("postprocessing_config", "postprocessing_config.target_class_config"),
    ],
)
def test_class_missing_from_one_block_is_named(block, path):
    e = only_error("train", text=without_class(TRAIN, block, "cyclist"))
    assert e.path == path and e.value == "cyclist"
    assert "missing here" in e.expected


def test_dataset_mapping_must_feed_every_target_class():
    text = TRAIN.replace('value: "cyclist"', 'value: "bike"')
    e = only_error("train", text=text)
    assert e.path == "dataset_config.target_class_mapping" and e.value == "cyclist"


def test_dataset_mapping_keys_must_be_lower_case():
    e = only_error("train", text=TRAIN.replace('key: "heavy_truck"', 'key: "Heavy_Truck"'))
    assert e.path == "dataset_config.target_class_mapping" and e.value == "Heavy_Truck"


def test_duplicate_cost_function_class():
    errors = errors_of("train", overrides=["cost_function_config.target_classes.1.name=car"])
    assert ("cost_function_config.target_classes.1.name", "car") in {(e.path, e.value) for e in errors}


def test_bbox_handler_classes_must_match_inferencer():
    text = INFER.replace('key:"default"', 'key:"truck"')
    errors = errors_of("inference", text=text)
    assert {(e.path, e.value) for e in errors} == {
        ("bbox_handler_config.classwise_bbox_handler_config", "truck"),
        ("bbox_handler_config.classwise_bbox_handler_config", "cyclist"),
        ("bbox_handler_config.classwise_bbox_handler_config", "pedestrian"),
    }


# --------------------------------------------------------------------------- numeric ranges


@pytest.mark.parametrize(
    "override,path,value",
    [
        (
            "augmentation_config.spatial_augmentation.hflip_probability=1.5",
            "augmentation_config.spatial_augmentation.hflip_probability",
            1.5,
        ),
        (
            "augmentation_config.color_augmentation.hue_rotation_max=400",
            "augmentation_config.color_augmentation.hue_rotation_max",
            400.0,
        ),
        ("training_config.batch_size_per_gpu=0", "training_config.batch_size_per_gpu", 0),
        ("training_config.num_epochs=0", "training_config.num_epochs", 0),
        ("model_config.dropout_rate=1.5", "model_config.dropout_rate", 1.5),
        ("bbox_rasterizer_config.deadzone_radius=2", "bbox_rasterizer_config.deadzone_radius", 2.0),
        (
            "postprocessing_config.target_class_config.car.clustering_config.dbscan_eps=1.3",
            "postprocessing_config.target_class_config.car.clustering_config.dbscan_eps",
            1.3,
        ),
        (
            "evaluation_config.minimum_detection_ground_truth_overlap.car=1.2",
            "evaluation_config.minimum_detection_ground_truth_overlap.car",
            1.2,
        ),
        (
            "cost_function_config.target_classes.0.coverage_foreground_weight=-0.1",
            "cost_function_config.target_classes.0.coverage_foreground_weight",
            -0.1,
        ),
        (
            "cost_function_config.target_classes.0.objectives.0.name=coverage",
            "cost_function_config.target_classes.0.objectives.0.name",
            "coverage",
        ),
        (
            "training_config.learning_rate.soft_start_annealing_schedule.annealing=0.05",
            "training_config.learning_rate.soft_start_annealing_schedule.annealing",
            0.05,
        ),
        ("training_config.checkpoint_interval=100", "training_config.checkpoint_interval", 100.0),
        ("evaluation_config.first_validation_epoch=81", "evaluation_config.first_validation_epoch", 81),
        ("model_config.arch=resnett", "model_config.arch", "resnett"),
        ("model_config.num_layers=20", "model_config.num_layers", 20),
        ("dataset_config.image_extension=bmp", "dataset_config.image_extension", "bmp"),
    ],
)
def test_range_rules(override, path, value):
    e = only_error("train", overrides=[override])
    assert e.path == path and e.value == value and e.expected


def test_arch_typo_gets_did_you_mean():
    assert "did you mean 'resnet'" in only_error("train", overrides=["model_config.arch=resnett"]).expected


def test_freeze_blocks_must_exist_in_the_template():
    e = only_error("train", text=TRAIN.replace("freeze_blocks: 1", "freeze_blocks: 7"))
    assert e.path == "model_config.freeze_blocks.1" and e.value == 7.0 and "0..4" in e.expected


def test_inference_int8_needs_calibration_cache():
    text = INFER.replace('calibration_cache: "/path/to/calibration/cache"', "")
    e = only_error("inference", text=text)
    assert e.path == "inferencer_config.tensorrt_config.calibrator_config.calibration_cache"


def test_inference_confidence_model_and_color():
    text = INFER.replace('confidence_model: "aggregate_cov"', 'confidence_model: "max_cov"', 1).replace(
        "G: 255", "G: 300"
    )
    errors = errors_of("inference", text=text)
    assert {e.path for e in errors} == {
        "bbox_handler_config.classwise_bbox_handler_config.car.confidence_model",
        "bbox_handler_config.classwise_bbox_handler_config.car.bbox_color.G",
    }


@pytest.mark.parametrize(
    "old,new,path",
    [
        ('partition_mode: "random"', 'partition_mode: "randm"', "kitti_config.partition_mode"),
        ("val_split: 20", "val_split: 150", "kitti_config.val_split"),
        ("num_shards: 10", "num_shards: 30", "kitti_config.num_shards"),
        ("num_partitions: 2", "num_partitions: 3", "kitti_config.num_partitions"),
        ('image_extension: ".jpg"', 'image_extension: ".gif"', "kitti_config.image_extension"),
    ],
)
def test_dataset_convert_rules(old, new, path):
    assert only_error("dataset_convert", text=CONVERT.replace(old, new)).path == path


def test_dataset_convert_needs_kitti_or_coco():
    e = only_error("dataset_convert", text='image_directory_path: "/data"')
    assert e.path == "<top level>" and "kitti_config" in e.expected


def test_required_blocks_unless_partial():
    text = TRAIN.split("evaluation_config {")[0]  # drops evaluation, cost, training, rasterizer
    missing = {e.path for e in errors_of("train", text=text)}
    assert {"evaluation_config", "cost_function_config", "training_config", "bbox_rasterizer_config"} <= missing
    SPEC.load("train", text=text, partial=True)


def test_several_errors_are_reported_together():
    errors = errors_of("train", overrides=["training_config.num_epochs=0", "model_config.dropout_rate=2"])
    assert [e.path for e in errors] == ["model_config.dropout_rate", "training_config.num_epochs"]


# --------------------------------------------------------------------------- reading errors


def test_unknown_field_with_did_you_mean(tmp_path):
    spec = tmp_path / "spec.txt"
    spec.write_text(TRAIN.replace("output_image_width: 960", "output_image_widht: 960"))
    e = only_error("train", path=spec)
    assert e.path == "augmentation_config.preprocessing.output_image_widht"
    assert e.value == "output_image_widht" and "did you mean 'output_image_width'" in e.expected
    assert e.source == str(spec) and e.line == TRAIN.splitlines().index("    output_image_width: 960") + 1
    assert f"line {e.line}, column 5" in str(e)


def test_unknown_field_inside_map_entry_names_the_key():
    e = only_error("train", text=TRAIN.replace("dbscan_eps: 0.15", "dbscan_epsilon: 0.15", 1))
    assert e.path == "postprocessing_config.target_class_config.car.clustering_config.dbscan_epsilon"
    assert "did you mean 'dbscan_eps'" in e.expected


@pytest.mark.parametrize(
    "old,new,path,kind",
    [
        (
            "output_image_width: 960",
            'output_image_width: "wide"',
            "augmentation_config.preprocessing.output_image_width",
            "unsigned integer",
        ),
        ("num_epochs: 80", "num_epochs: 8.5", "training_config.num_epochs", "unsigned integer"),
        ('arch: "resnet"', "arch: resnet", "model_config.arch", "quoted string"),
        ("use_pooling: False", "use_pooling: maybe", "model_config.use_pooling", "true or false"),
        ("deadzone_radius: 0.67", "deadzone_radius: big", "bbox_rasterizer_config.deadzone_radius", "a number"),
    ],
)
def test_wrong_type(old, new, path, kind):
    e = only_error("train", text=TRAIN.replace(old, new))
    assert e.path == path and kind in e.expected


def test_unknown_enum_value():
    e = only_error("train", text=TRAIN.replace("average_precision_mode: INTEGRATE", "average_precision_mode: INTEGRAL"))
    assert e.path == "evaluation_config.average_precision_mode" and e.value == "INTEGRAL"
    assert "SAMPLE, INTEGRATE" in e.expected and "did you mean 'INTEGRATE'" in e.expected


def test_both_inference_backends_is_an_error():
    text = INFER.replace("  # model handler config", '  tlt_config { model: "/m.tlt" }')
    e = only_error("inference", text=text)
    assert e.path == "inferencer_config.tensorrt_config" and "oneof" in e.expected


def test_repeated_singular_field_is_an_error():
    e = only_error("train", text=TRAIN.replace("num_epochs: 80", "num_epochs: 80\n  num_epochs: 90"))
    assert e.path == "training_config.num_epochs" and "multiple" in e.expected


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.txt"
    e = only_error("train", path=missing)
    assert e.value == str(missing) and e.source == str(missing) and "existing" in e.expected


def test_unknown_task():
    with pytest.raises(TaoUserError, match="did you mean 'train'"):
        SPEC.load("trian")


# --------------------------------------------------------------------------- overrides


def test_overrides_set_scalars_enums_and_map_entries():
    spec = SPEC.load(
        "train",
        overrides=[
            "training_config.num_epochs=10",
            "evaluation_config.first_validation_epoch=5",
            "evaluation_config.average_precision_mode=SAMPLE",
            "model_config.use_pooling=true",
            'model_config.pretrained_model_file="/w/r18.hdf5"',
            "postprocessing_config.target_class_config.car.clustering_config.dbscan_eps=0.25",
            "cost_function_config.target_classes.2.class_weight=3",
        ],
    )
    assert spec.training_config.num_epochs == 10 and spec.evaluation_config.average_precision_mode == 0
    assert spec.model_config.use_pooling and spec.model_config.pretrained_model_file == "/w/r18.hdf5"
    assert spec.postprocessing_config.target_class_config["car"].clustering_config.dbscan_eps == pytest.approx(0.25)
    assert spec.cost_function_config.target_classes[2].class_weight == 3


@pytest.mark.parametrize(
    "override,expected",
    [
        ("training_config.num_epoch=3", "did you mean 'num_epochs'"),
        ("trainig_config.num_epochs=3", "did you mean 'training_config'"),
        ("training_config=3", "scalar field"),
        ("training_config.num_epochs.x=3", "scalar field 'num_epochs'"),
        ("cost_function_config.target_classes.9.class_weight=1", "index < 3"),
        ("cost_function_config.target_classes.name=car", "index < 3"),
        ("model_config.freeze_blocks=2", "is a list"),
        ("postprocessing_config.target_class_config=1", "map key"),
        ("training_config.num_epochs=ten", "unsigned integer"),
        ("evaluation_config.average_precision_mode=INTEGRAL", "did you mean 'INTEGRATE'"),
        ("no_equals_sign", "dotted.field.path=value"),
    ],
)
def test_bad_override(override, expected):
    e = only_error("train", overrides=[override])
    assert expected in e.expected, str(e)
