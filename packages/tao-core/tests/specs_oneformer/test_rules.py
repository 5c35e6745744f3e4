"""Cross-field rules of the OneFormer spec: one bad spec per rule, plus the normalisations."""

import pytest
from omegaconf.errors import ReadonlyConfigError

from tao_core.errors import SpecErrors
from tao_core.specs.oneformer import SPEC
from tao_core.specs.oneformer_dataset import split_format

from ._util import errors_of, load, paths_of

# ----------------------------------------------------------------------------- num_gpus vs gpu_ids


@pytest.mark.parametrize("task", ["train", "evaluate", "inference"])
def test_gpu_ids_longer_raises_num_gpus(task):
    # The seed's own example: num_gpus 1, gpu_ids [0, 1] -> num_gpus becomes 2.
    cfg = load(task, f"{task}.num_gpus=1", f"{task}.gpu_ids=[0,1]")
    assert cfg[task].num_gpus == 2 and list(cfg[task].gpu_ids) == [0, 1]


@pytest.mark.parametrize("task", ["train", "evaluate", "inference"])
def test_num_gpus_larger_extends_gpu_ids(task):
    cfg = load(task, f"{task}.num_gpus=3", f"{task}.gpu_ids=[2]")
    assert cfg[task].num_gpus == 3 and list(cfg[task].gpu_ids) == [2, 0, 1]


def test_consistent_gpus_are_kept():
    cfg = load("train", "train.num_gpus=2", "train.gpu_ids=[3,5]")
    assert cfg.train.num_gpus == 2 and list(cfg.train.gpu_ids) == [3, 5]


def test_duplicate_gpu_ids_is_an_error():
    (err,) = errors_of("train", "train.gpu_ids=[1,1]")
    assert err.path == "train.gpu_ids" and err.value == [1, 1]


def test_duplicate_gpu_ids_of_another_task_does_not_block():
    load("export", "train.gpu_ids=[1,1]")


# ----------------------------------------------------------------------------- task inputs


@pytest.mark.parametrize(
    "task, missing, expected_path",
    [
        ("train", "dataset.train.annotations=null", "dataset.train.annotations"),
        ("train", "dataset.val.annotations=null", "dataset.val.annotations"),
        ("train", "dataset.train.images=null", "dataset.train.images"),
        ("evaluate", "dataset.test.annotations=null", "dataset.test.annotations"),
        ("evaluate", "evaluate.checkpoint=null", "evaluate.checkpoint"),
        ("inference", "inference.checkpoint=null", "inference.checkpoint"),
        ("inference", "inference.images_dir=null", "inference.images_dir"),
        ("export", "export.checkpoint=null", "export.checkpoint"),
        ("export", "export.onnx_file=null", "export.onnx_file"),
        ("gen_trt_engine", "gen_trt_engine.onnx_file=null", "gen_trt_engine.onnx_file"),
        ("gen_trt_engine", "gen_trt_engine.trt_engine=null", "gen_trt_engine.trt_engine"),
    ],
)
def test_task_needs_its_inputs(task, missing, expected_path):
    assert paths_of(task, missing) == [expected_path]


def test_deploy_evaluate_may_give_trt_engine_instead_of_checkpoint():
    load("evaluate", "evaluate.checkpoint=null", "evaluate.trt_engine=/m.engine")


def test_empty_spec_for_train_lists_every_missing_input():
    with pytest.raises(SpecErrors) as info:
        SPEC.load("train", text="")
    assert {"dataset.train.annotations", "dataset.val.annotations"} <= {e.path for e in info.value.errors}


# ----------------------------------------------------------------------------- dataset formats


def test_split_format_from_file_names():
    class S:
        def __init__(self, annotations, panoptic=None):
            self.annotations, self.panoptic = annotations, panoptic

    assert split_format(S("a/train.jsonl")) == "semantic"
    assert split_format(S("a/panoptic.json", "a/pan")) == "panoptic"
    assert split_format(S("a/instances.json")) == "instance"
    assert split_format(S(None)) is None


def test_semantic_jsonl_train_data_loads_without_images_dir():
    load("train", "dataset.train.annotations=/d/train.jsonl", "dataset.train.panoptic=null", "dataset.train.images=null")


def test_instance_coco_data_loads():
    load("evaluate", "dataset.test.panoptic=null", "dataset.test.annotations=/d/instances_val.json", "model.test.instance_on=true")


def test_annotation_file_must_be_json_or_jsonl():
    (err,) = errors_of("train", "dataset.train.annotations=/d/train.txt")
    assert err.path == "dataset.train.annotations" and ".jsonl" in err.expected


def test_panoptic_dir_with_jsonl_annotations_is_an_error():
    (err,) = errors_of("train", "dataset.train.annotations=/d/train.jsonl")
    assert err.path == "dataset.train.panoptic"


def test_panoptic_evaluation_needs_panoptic_annotations():
    (err,) = errors_of("evaluate", "dataset.test.panoptic=null", "model.test.panoptic_on=true")
    assert err.path == "model.test.panoptic_on" and "instance" in err.expected


def test_instance_evaluation_on_semantic_jsonl_is_an_error():
    errs = errors_of(
        "evaluate", "dataset.test.panoptic=null", "dataset.test.annotations=/d/val.jsonl", "model.test.instance_on=true"
    )
    assert [e.path for e in errs] == ["model.test.instance_on"]


def test_validation_split_is_checked_against_the_evaluation_flags_in_train():
    assert paths_of("train", "dataset.val.panoptic=null", "model.test.panoptic_on=true") == ["model.test.panoptic_on"]


def test_evaluate_needs_at_least_one_result_kind():
    assert paths_of("evaluate", "model.test.semantic_on=false") == ["model.test.semantic_on"]


def test_min_scale_above_max_scale():
    (err,) = errors_of("train", "dataset.min_scale=3.0")
    assert err.path == "dataset.min_scale" and err.value == 3.0


# ----------------------------------------------------------------------------- model shapes


@pytest.mark.parametrize(
    "override, expected_path",
    [
        ("model.one_former.nheads=7", "model.one_former.hidden_dim"),
        ("model.text_encoder.n_ctx=150", "model.text_encoder.n_ctx"),
        ("model.sem_seg_head.ignore_value=10", "model.sem_seg_head.ignore_value"),
        ("model.backbone.swin.num_heads=[6,12,24]", "model.backbone.swin.num_heads"),
        ("model.backbone.swin.num_heads=[5,12,24,48]", "model.backbone.swin.num_heads[0]"),
        ("model.backbone.swin.out_features=[res2,res3,res4]", "model.backbone.swin.out_features"),
        ("model.one_former.num_feature_levels=4", "model.one_former.num_feature_levels"),
        ("model.sem_seg_head.in_features=[res4,res5]",
         "model.sem_seg_head.deformable_transformer_encoder_in_features[0]"),
    ],
)
def test_model_shape_rules(override, expected_path):
    assert expected_path in paths_of("train", override)


def test_out_indices_beyond_the_stages():
    errs = errors_of("train", "model.backbone.swin.depths=[2,2,6]", "model.backbone.swin.num_heads=[3,6,12]",
                     "model.backbone.swin.out_indices=[0,1,2,3]")
    assert [e.path for e in errs] == ["model.backbone.swin.out_indices[3]"]


def test_head_reads_only_features_the_backbone_outputs():
    errs = errors_of("train", "model.backbone.swin.out_indices=[0,1,2]", "model.backbone.swin.out_features=[res2,res3,res4]")
    assert [e.path for e in errs] == ["model.sem_seg_head.in_features[3]"]


def test_small_swin_for_cpu_runs_is_allowed():
    load("train", "model.backbone.swin.embed_dim=48", "model.backbone.swin.depths=[1,1,1,1]",
         "model.backbone.swin.num_heads=[1,2,4,8]", "model.one_former.dec_layers=2",
         "model.one_former.num_object_queries=20", "model.text_encoder.n_ctx=4")


# ----------------------------------------------------------------------------- aliases


def test_backbone_type_decides_the_backbone():
    cfg = load("train", "model.backbone.type=EfficientViT")
    assert cfg.model.backbone.name == "EfficientViT" == cfg.model.backbone.type


def test_backbone_type_and_name_conflict():
    assert paths_of("train", "model.backbone.type=D2SwinTransformer", "model.backbone.name=EfficientViT") == [
        "model.backbone.type"
    ]


def test_pretrained_model_spellings():
    cfg = load("train", "train.pretrained_model_path=/p.pth")
    assert cfg.train.pretrained_model == "/p.pth"
    assert paths_of("train", "train.pretrained_model_path=/p.pth", "train.pretrained_model=/q.pth") == [
        "train.pretrained_model"
    ]


def test_pretrained_backbone_spellings():
    cfg = load("train", "train.pretrained_backbone=/b.pth")
    assert cfg.model.backbone.pretrained_weights == "/b.pth"
    assert paths_of("train", "train.pretrained_backbone=/b.pth", "model.backbone.pretrained_weights=/c.pth") == [
        "train.pretrained_backbone"
    ]


def test_threshold_spellings():
    cfg = load("train", "model.overlap_threshold=0.6")
    assert cfg.model.test.overlap_threshold == 0.6
    assert paths_of("train", "model.overlap_threshold=0.6", "model.test.overlap_threshold=0.7") == [
        "model.test.overlap_threshold"
    ]


def test_inference_mode_defaults_to_model_mode():
    assert load("inference", "model.mode=panoptic").inference.mode == "panoptic"
    assert load("inference", "model.mode=panoptic", "inference.mode=instance").inference.mode == "instance"


# ----------------------------------------------------------------------------- train, export, gen_trt_engine


def test_milestones_must_increase():
    (err,) = errors_of("train", "train.optim.milestones=[20,10]")
    assert err.path == "train.optim.milestones" and err.value == [20, 10]


def test_default_milestone_beyond_num_epochs_is_allowed():
    load("train", "train.num_epochs=5")


def test_export_batch_size_zero():
    assert paths_of("export", "export.batch_size=0") == ["export.batch_size"]


def test_export_size_must_be_a_multiple_of_size_divisibility():
    errs = errors_of("export", "export.input_width=1000", "export.input_height=500")
    assert [e.path for e in errs] == ["export.input_width", "export.input_height"]
    load("export", "export.input_width=1000", "model.one_former.size_divisibility=0")


def test_gen_trt_engine_batch_order():
    assert paths_of("gen_trt_engine", "gen_trt_engine.tensorrt.min_batch_size=4") == [
        "gen_trt_engine.tensorrt.opt_batch_size"
    ]


def test_loaded_config_is_frozen():
    cfg = load("train")
    with pytest.raises(ReadonlyConfigError):
        cfg.train.num_epochs = 3


def test_task_only_rules_do_not_block_other_tasks():
    load("train", "export.input_width=1000", "export.batch_size=0")
    load("export", "train.optim.milestones=[20,10]")
