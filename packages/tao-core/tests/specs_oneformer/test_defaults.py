"""Defaults equal seed 004's Default / Recommended column."""

import subprocess
import sys

import pytest

from tao_core.specs.oneformer import SPEC, TASKS

D = SPEC.defaults("train")


@pytest.mark.parametrize(
    "path, expected",
    [
        ("results_dir", "/results"),
        ("encryption_key", None),
        # train table
        ("train.num_gpus", 1), ("train.gpu_ids", [0]), ("train.seed", 1234), ("train.num_epochs", 10),
        ("train.checkpoint_interval", 1), ("train.validation_interval", 1),
        ("train.resume_training_checkpoint_path", None), ("train.results_dir", "/results/train"),
        ("train.clip_grad_type", "full"), ("train.clip_grad_norm", 0.1), ("train.precision", "fp32"),
        ("train.distributed_strategy", "ddp"), ("train.activation_checkpoint", True),
        ("train.pretrained_model_path", None), ("train.num_nodes", 1), ("train.freeze", []),
        ("train.verbose", False), ("train.iters_per_epoch", None),
        # optim table
        ("train.optim.lr", 2e-4), ("train.optim.momentum", 0.9), ("train.optim.weight_decay", 1e-4),
        ("train.optim.lr_scheduler", "MultiStep"), ("train.optim.gamma", 0.1), ("train.optim.milestones", [11]),
        ("train.optim.monitor_name", "val_loss"), ("train.optim.type", "AdamW"),
        # evaluate / inference tables
        ("evaluate.checkpoint", None), ("evaluate.trt_engine", None), ("evaluate.num_gpus", 1),
        ("evaluate.gpu_ids", [0]), ("evaluate.results_dir", "/results/evaluate"),
        ("inference.checkpoint", None), ("inference.trt_engine", None), ("inference.num_gpus", 1),
        ("inference.gpu_ids", [0]), ("inference.results_dir", "/results/inference"),
        ("inference.image_size", [1024, 1024]),
        # export table
        ("export.checkpoint", None), ("export.onnx_file", None), ("export.on_cpu", True),
        ("export.opset_version", 12), ("export.input_channel", 3), ("export.input_width", 960),
        ("export.input_height", 544), ("export.batch_size", -1),
        # model table and backbone / swin tables
        ("model.object_mask_threshold", 0.4), ("model.overlap_threshold", 0.8), ("model.test_topk_per_image", 100),
        ("model.backbone.name", "D2SwinTransformer"), ("model.backbone.swin.embed_dim", 192),
        ("model.backbone.swin.depths", [2, 2, 18, 2]), ("model.backbone.swin.num_heads", [6, 12, 24, 48]),
        ("model.backbone.swin.window_size", 12), ("model.backbone.swin.mlp_ratio", 4.0),
        ("model.backbone.swin.patch_size", 4), ("model.backbone.swin.patch_norm", True),
        ("model.backbone.swin.ape", False), ("model.backbone.swin.qkv_bias", True),
        ("model.backbone.swin.qk_scale", None), ("model.backbone.swin.attn_drop_rate", 0.0),
        ("model.backbone.swin.drop_rate", 0.0), ("model.backbone.swin.drop_path_rate", 0.3),
        ("model.backbone.swin.out_features", ["res2", "res3", "res4", "res5"]),
        ("model.backbone.swin.out_indices", [0, 1, 2, 3]), ("model.backbone.swin.use_checkpoint", False),
        ("model.backbone.swin.pretrain_img_size", 384),
        ("model.one_former.num_object_queries", 150), ("model.sem_seg_head.num_classes", 133),
        # data table
        ("dataset.pixel_mean", [123.675, 116.28, 103.53]), ("dataset.pixel_std", [58.395, 57.12, 57.375]),
        ("dataset.dataset_type", "default"), ("dataset.augmentation.fixed_padding", False),
    ],
)
def test_default(path, expected):
    node = D
    for part in path.split("."):
        node = node[part]
    value = list(node) if hasattr(node, "__len__") and not isinstance(node, str) else node
    assert value == expected


def test_task_results_dirs_follow_global_results_dir():
    cfg = SPEC.load("export", overrides=["results_dir=/r", "export.checkpoint=/m.pth", "export.onnx_file=/m.onnx"])
    assert (cfg.train.results_dir, cfg.evaluate.results_dir, cfg.export.results_dir) == ("/r/train", "/r/evaluate", "/r/export")


def test_every_task_has_template_and_json_schema():
    for task in TASKS:
        assert "num_object_queries: 150" in SPEC.template(task)
        assert SPEC.json_schema(task)["properties"]["train"]["properties"]["num_gpus"]["exclusiveMinimum"] == 0


def test_seed_task_list():
    assert {"train", "evaluate", "inference", "export", "gen_trt_engine"} <= set(TASKS)


def test_spec_module_imports_no_deep_learning_framework():
    code = (
        "import sys, tao_core.specs.oneformer; "
        "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("task", TASKS)
def test_template_loads_back_with_only_task_inputs_missing(task):
    from tao_core.errors import SpecErrors

    from ._util import MINIMAL

    cfg = SPEC.load(task, text=SPEC.template(task), overrides=MINIMAL[task])
    assert cfg.train.results_dir == "/results/train"
    with pytest.raises(SpecErrors) as info:
        SPEC.load(task, text=SPEC.template(task))
    # Only "what this task reads is not set" errors: every default itself is valid.
    assert all("got None" in str(e) for e in info.value.errors)
