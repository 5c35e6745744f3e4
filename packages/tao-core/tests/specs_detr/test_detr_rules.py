"""Bad specs: every cross-field rule, task requirement and engine check gives a SpecError that
names the field, the bad value and what is allowed."""

import pytest
from specs_detr_helpers import INFER_DATA, NEEDS, SPECS, TEST_DATA, TRAIN_DATA, load_ok, paths, spec_errors

from tao_core.errors import SpecError, SpecErrors, TaoUserError
from tao_core.specs import rules

BOTH = pytest.mark.parametrize("network", ["dino", "deformable_detr"])


def _one(errors, path):
    found = [e for e in errors if e.path == path]
    assert found, f"no error at {path}: {[str(e) for e in errors]}"
    return found[0]


# ----------------------------------------------------------------------------- model / dataset rules


@BOTH
def test_interm_indices_must_match_feature_levels(network):
    # Seed 003 error pattern: return_interm_indices vs num_feature_levels mismatch.
    err = _one(spec_errors(network, "train", ["model.num_feature_levels=3"]), "model.return_interm_indices")
    assert err.value == [1, 2, 3, 4]
    assert "num_feature_levels" in err.expected and "[1, 2, 3]" in err.expected
    load_ok(network, "train", overrides=["model.num_feature_levels=3", "model.return_interm_indices=[1, 2, 3]"])


@BOTH
def test_interm_indices_must_be_a_listed_combination(network):
    errors = spec_errors(network, "train", ["model.num_feature_levels=3", "model.return_interm_indices=[2, 3, 4]"])
    assert "[1, 2, 3]" in _one(errors, "model.return_interm_indices").expected


def test_interm_indices_items_checked_by_engine():
    assert "model.return_interm_indices[1]" in paths(spec_errors("dino", "train", ["model.return_interm_indices=[1, 7]"]))


@BOTH
def test_num_select_at_most_queries_times_classes(network):
    # Seed 003 error pattern: num_select vs num_queries * num_classes.
    errors = spec_errors(network, "train", ["model.num_queries=10", "dataset.num_classes=3", "model.num_select=31"])
    err = _one(errors, "model.num_select")
    assert err.value == 31 and "30" in err.expected
    load_ok(network, "train", overrides=["model.num_queries=10", "dataset.num_classes=3", "model.num_select=30"])


@BOTH
def test_num_classes_counts_background(network):
    # Seed 003: too low num_classes -> CUDA device-side assert; ids start at 1, so 1 is never right.
    err = _one(spec_errors(network, "train", ["dataset.num_classes=1"]), "dataset.num_classes")
    assert "max(category_id) + 1" in err.expected
    assert "dataset.num_classes" in paths(spec_errors(network, "train", ["dataset.num_classes=0"]))  # bound


def test_num_classes_against_annotations_helper():
    # The data-time half of the seed-003 rule (run by the loader once annotations are read).
    assert rules.check_num_classes_covers(91, [1, 90]) == []
    (err,) = rules.check_num_classes_covers(5, [1, 5])
    assert err.path == "dataset.num_classes" and "6" in err.expected


@BOTH
def test_eval_class_ids_below_num_classes(network):
    errors = spec_errors(network, "train", ["dataset.num_classes=5", "dataset.eval_class_ids=[1, 5]"])
    assert paths(errors) == ["dataset.eval_class_ids[1]"]


@BOTH
def test_crop_min_not_above_max(network):
    errors = spec_errors(network, "train", ["dataset.augmentation.train_random_crop_min=700"])
    err = _one(errors, "dataset.augmentation.train_random_crop_min")
    assert err.value == 700 and "train_random_crop_max (600)" in err.expected


@BOTH
def test_fixed_random_crop_multiple_of_32(network):
    err = _one(spec_errors(network, "train", ["dataset.augmentation.fixed_random_crop=1000"]),
               "dataset.augmentation.fixed_random_crop")
    assert "multiple of 32" in err.expected and "992" in err.expected and "1024" in err.expected
    load_ok(network, "train", overrides=["dataset.augmentation.fixed_random_crop=640"])


@BOTH
def test_mean_std_one_or_three_values(network):
    errors = spec_errors(network, "train", ["dataset.augmentation.input_mean=[0.5, 0.5]"])
    assert "1 or 3" in _one(errors, "dataset.augmentation.input_mean").expected
    load_ok(network, "train", overrides=["dataset.augmentation.input_mean=[0.5]", "dataset.augmentation.input_std=[0.2]"])


@BOTH
def test_hidden_dim_divisible(network):
    errors = spec_errors(network, "train", ["model.hidden_dim=100"])
    assert paths(errors).count("model.hidden_dim") == 2  # by nheads (8) and by 32 (GroupNorm)


@BOTH
def test_multistep_needs_steps(network):
    assert "train.optim.lr_steps" in paths(spec_errors(network, "train", ["train.optim.lr_steps=[]"]))
    load_ok(network, "train", overrides=["train.optim.lr_steps=[]", "train.optim.lr_scheduler=StepLR"])


@BOTH
def test_batch_size_zero_rejected(network):
    errors = spec_errors(network, "export", ["export.batch_size=0"])
    assert "export.batch_size" in paths(errors)


def test_dino_fix_refpoints_hw():
    assert "model.fix_refpoints_hw" in paths(spec_errors("dino", "train", ["model.fix_refpoints_hw=0"]))
    assert "model.fix_refpoints_hw" in paths(spec_errors("dino", "train", ["model.fix_refpoints_hw=-3"]))
    for ok in (-2, -1, 5):
        load_ok("dino", "train", overrides=[f"model.fix_refpoints_hw={ok}"])


def test_dino_vit_needs_fixed_random_crop():
    err = _one(spec_errors("dino", "train", ["model.backbone=vit_large_nvdinov2"]),
               "dataset.augmentation.fixed_random_crop")
    assert "vit_large_nvdinov2" in err.expected
    load_ok("dino", "train", overrides=["model.backbone=vit_large_nvdinov2", "dataset.augmentation.fixed_random_crop=1024"])
    # Not a training concern elsewhere.
    load_ok("dino", "export", overrides=["model.backbone=vit_large_nvdinov2"])


def test_ddetr_backbones_and_levels():
    assert "model.backbone" in paths(spec_errors("deformable_detr", "train", ["model.backbone=fan_small"]))
    assert "model.num_feature_levels" in paths(spec_errors("deformable_detr", "train", ["model.num_feature_levels=5"]))
    for backbone in ("resnet_18", "resnet_34", "gc_vit_xxtiny"):
        load_ok("deformable_detr", "train", overrides=[f"model.backbone={backbone}"])
    load_ok("dino", "train", overrides=["model.num_feature_levels=5", "model.return_interm_indices=[0, 1, 2, 3, 4]"])


# ----------------------------------------------------------------------------- aliases


@BOTH
def test_model_pretrained_model_path_alias(network):
    cfg = load_ok(network, "train", overrides=["model.pretrained_model_path=/w/bb.pth"])
    assert cfg.model.pretrained_backbone_path == "/w/bb.pth"
    cfg = load_ok(network, "train", overrides=["model.pretrained_backbone_path=/w/bb.pth"])
    assert cfg.model.pretrained_model_path == "/w/bb.pth"
    errors = spec_errors(network, "train", ["model.pretrained_backbone_path=/a", "model.pretrained_model_path=/b"])
    assert "model.pretrained_model_path" in paths(errors)


@BOTH
def test_monitor_alias(network):
    cfg = load_ok(network, "train", overrides=["train.optim.lr_monitor=train_loss"])
    assert cfg.train.optim.monitor_name == "train_loss"
    cfg = load_ok(network, "train", overrides=["train.optim.monitor_name=train_loss"])
    assert cfg.train.optim.lr_monitor == "train_loss"


def test_dino_layer_decay_alias():
    cfg = load_ok("dino", "train", overrides=["train.optim.lr_decay_rate=0.8"])
    assert cfg.train.optim.layer_decay_rate == pytest.approx(0.8)
    errors = spec_errors("dino", "train", ["train.optim.lr_decay_rate=0.8", "train.optim.layer_decay_rate=0.7"])
    assert "train.optim.lr_decay_rate" in paths(errors)
    assert "train.optim.layer_decay_rate" in paths(spec_errors("deformable_detr", "train", ["train.optim.layer_decay_rate=0.7"]))


# ----------------------------------------------------------------------------- GPUs (seed 004's rule)


@BOTH
@pytest.mark.parametrize("section", ["train", "evaluate", "inference"])
def test_gpus_follow_the_larger_setting(network, section):
    task = section
    cfg = load_ok(network, task, overrides=[f"{section}.num_gpus=1", f"{section}.gpu_ids=[0, 1]"])
    assert cfg[section].num_gpus == 2 and list(cfg[section].gpu_ids) == [0, 1]
    cfg = load_ok(network, task, overrides=[f"{section}.num_gpus=3", f"{section}.gpu_ids=[2]"])
    assert cfg[section].num_gpus == 3 and list(cfg[section].gpu_ids) == [2, 0, 1]
    cfg = load_ok(network, task, overrides=[f"{section}.num_gpus=2"])
    assert list(cfg[section].gpu_ids) == [0, 1]


@BOTH
def test_gpu_ids_distinct_and_non_negative(network):
    assert "train.gpu_ids" in paths(spec_errors(network, "train", ["train.gpu_ids=[1, 1]"]))
    assert "train.gpu_ids[0]" in paths(spec_errors(network, "train", ["train.gpu_ids=[-1]"]))


def test_check_gpus_helper_on_plain_objects():
    class Section:
        num_gpus, gpu_ids = 4, [1, 3]

    s = Section()
    assert rules.check_gpus(s, "train") == []
    assert (s.num_gpus, s.gpu_ids) == (4, [1, 3, 0, 2])


# ----------------------------------------------------------------------------- task requirements


@BOTH
def test_train_needs_val_data(network):
    # Seed 003: omitting val_data_sources makes training fail at start-up (FileNotFoundError);
    # here it is a spec error that names the fix (reuse the train entry).
    errors = spec_errors(network, "train", [TRAIN_DATA[0]], with_needs=False)
    assert paths(errors) == ["dataset.val_data_sources"]
    assert "reuse the train_data_sources" in errors[0].expected


@BOTH
def test_train_needs_train_data(network):
    errors = spec_errors(network, "train", [TRAIN_DATA[1]], with_needs=False)
    assert paths(errors) == ["dataset.train_data_sources"]


@BOTH
def test_data_source_fields_required(network):
    errors = spec_errors(
        network, "train", ["dataset.train_data_sources=[{image_dir: /d}]", TRAIN_DATA[1]], with_needs=False
    )
    assert paths(errors) == ["dataset.train_data_sources[0].json_file"]


@BOTH
def test_evaluate_requirements(network):
    errors = spec_errors(network, "evaluate", with_needs=False)
    assert set(paths(errors)) == {"evaluate.checkpoint", "dataset.test_data_sources"}
    # A TensorRT engine or validation data are acceptable substitutes.
    load_ok(network, "evaluate", overrides=["evaluate.trt_engine=/e.engine", TRAIN_DATA[1]], with_needs=False)
    assert paths(spec_errors(network, "evaluate", ["evaluate.checkpoint=/m.pth",
                                                   "dataset.test_data_sources={image_dir: /d}"], with_needs=False)) == [
        "dataset.test_data_sources.json_file"
    ]


@BOTH
def test_inference_requirements(network):
    errors = spec_errors(network, "inference", with_needs=False)
    assert set(paths(errors)) == {"inference.checkpoint", "dataset.infer_data_sources"}
    errors = spec_errors(network, "inference", ["inference.checkpoint=/m", "dataset.infer_data_sources={image_dir: /d}"],
                         with_needs=False)
    assert paths(errors) == ["dataset.infer_data_sources.classmap"]
    errors = spec_errors(network, "inference", ["dataset.infer_data_sources.image_dir=5"])
    assert "dataset.infer_data_sources.image_dir" in paths(errors)
    cfg = load_ok(network, "inference", overrides=["dataset.infer_data_sources.image_dir=[/a, /b]"])
    assert list(cfg.dataset.infer_data_sources.image_dir) == ["/a", "/b"]


@BOTH
def test_export_needs_checkpoint(network):
    assert paths(spec_errors(network, "export", with_needs=False)) == ["export.checkpoint"]


@BOTH
def test_gen_trt_engine_rules(network):
    assert paths(spec_errors(network, "gen_trt_engine", with_needs=False)) == ["gen_trt_engine.onnx_file"]
    errors = spec_errors(network, "gen_trt_engine", ["gen_trt_engine.tensorrt.min_batch_size=4",
                                                     "gen_trt_engine.tensorrt.max_batch_size=8"])
    assert paths(errors) == ["gen_trt_engine.tensorrt.opt_batch_size"]
    load_ok(network, "gen_trt_engine", overrides=["gen_trt_engine.tensorrt.max_batch_size=8"])


@BOTH
def test_convert_requirements(network):
    errors = spec_errors(network, "convert", with_needs=False)
    assert set(paths(errors)) == {"input_source", "results_dir", "image_dir_name", "label_dir_name"}
    errors = spec_errors(network, "convert", ["partition_mode=random"])
    assert paths(errors) == ["num_partitions"]
    load_ok(network, "convert", overrides=["partition_mode=random", "num_partitions=2", "val_split=0.1"])
    assert "num_shards" in paths(spec_errors(network, "convert", ["num_shards=0"]))


# ----------------------------------------------------------------------------- engine checks on these schemas


@BOTH
def test_unknown_key_did_you_mean(network):
    (err,) = spec_errors(network, "train", ["model.num_querys=5"])
    assert err.path == "model.num_querys" and "did you mean 'num_queries'" in err.expected
    (err,) = spec_errors(network, "train", ["dataset.augmentaton.scales=[800]"])
    assert "did you mean 'augmentation'" in err.expected
    (err,) = spec_errors(network, "train", ["evalute.checkpoint=/m"])
    assert "did you mean 'evaluate'" in err.expected


@BOTH
def test_wrong_type(network):
    (err,) = spec_errors(network, "train", ["model.num_queries=many"])
    assert err.path == "model.num_queries" and "integer" in err.expected
    (err,) = spec_errors(network, "train", ["train.activation_checkpoint=maybe"])
    assert err.path == "train.activation_checkpoint"
    (err,) = spec_errors(network, "train", ["dataset.train_data_sources={image_dir: /d, json_file: /j}"])
    assert err.path == "dataset.train_data_sources" and "list" in err.expected


@BOTH
def test_out_of_range(network):
    (err,) = spec_errors(network, "train", ["model.dropout_ratio=1.5"])
    assert err.path == "model.dropout_ratio" and "<= 1" in err.expected
    (err,) = spec_errors(network, "train", ["train.clip_grad_norm=-1"])
    assert err.path == "train.clip_grad_norm"
    (err,) = spec_errors(network, "train", ["dataset.batch_size=0"])
    assert err.path == "dataset.batch_size"
    (err,) = spec_errors(network, "export", ["export.batch_size=-2"])
    assert err.path == "export.batch_size"


@BOTH
def test_not_in_options(network):
    (err,) = spec_errors(network, "train", ["train.precision=fp64"])
    assert err.path == "train.precision" and "fp16" in err.expected
    (err,) = spec_errors(network, "train", ["model.backbone=resnet50"])
    assert "did you mean 'resnet_50'" in err.expected
    (err,) = spec_errors(network, "train", ["train.optim.lr_scheduler=Cosine"])
    assert err.path == "train.optim.lr_scheduler"
    (err,) = spec_errors(network, "train", ["dataset.dataset_type=lazy"])
    assert err.path == "dataset.dataset_type"
    (err,) = spec_errors(network, "export", ["export.input_channel=1"])
    assert err.path == "export.input_channel"


@BOTH
def test_all_problems_reported_together(network):
    with pytest.raises(SpecErrors) as info:
        load_ok(network, "train", overrides=["dataset.augmentation.train_random_crop_min=700", "model.num_feature_levels=2",
                                             "dataset.num_classes=1"])
    assert len(info.value.errors) == 3
    assert "3 spec errors" in str(info.value)
    assert all(isinstance(e, SpecError) and e.source == "<spec>" for e in info.value.errors)


def test_unknown_task():
    with pytest.raises(TaoUserError, match="did you mean 'train'"):
        SPECS["dino"].load("trian")


def test_needs_table_is_sufficient():
    # Guard for the helpers: every task loads with exactly its NEEDS overrides.
    for network in SPECS:
        for task in NEEDS:
            load_ok(network, task)
    assert TEST_DATA and INFER_DATA
