"""Per-field checks from the schema metadata: unknown key, wrong type, out of range, not in options."""

import pytest

from ._util import errors_of


def test_unknown_key_suggests_the_close_one():
    (err,) = errors_of("train", "train.num_epoch=5")
    assert err.path == "train.num_epoch" and "num_epochs" in err.expected


def test_unknown_section():
    assert [e.path for e in errors_of("train", "modle.mode=semantic")] == ["modle"]


@pytest.mark.parametrize(
    "override, path",
    [
        ("train.num_epochs=ten", "train.num_epochs"),
        ("train.activation_checkpoint=maybe", "train.activation_checkpoint"),
        ("dataset.augmentation.train_min_size=800", "dataset.augmentation.train_min_size"),
        ("model.backbone.swin.depths=[2,two,18,2]", "model.backbone.swin.depths[1]"),
        ("dataset.train=/data/train", "dataset.train"),
    ],
)
def test_wrong_type(override, path):
    assert [e.path for e in errors_of("train", override)] == [path]


@pytest.mark.parametrize(
    "override, path",
    [
        ("train.num_gpus=0", "train.num_gpus"),
        ("train.clip_grad_norm=-1.0", "train.clip_grad_norm"),
        ("train.optim.lr=0", "train.optim.lr"),
        ("dataset.cutmix_prob=1.5", "dataset.cutmix_prob"),
        ("model.object_mask_threshold=1.2", "model.object_mask_threshold"),
        ("export.batch_size=-2", "export.batch_size"),
        ("inference.image_size=[1024]", "inference.image_size"),
        ("train.gpu_ids=[-1]", "train.gpu_ids[0]"),
    ],
)
def test_out_of_range(override, path):
    task = "export" if override.startswith("export") else "train"
    assert path in [e.path for e in errors_of(task, override)]


@pytest.mark.parametrize(
    "override, path",
    [
        ("train.precision=bf16", "train.precision"),
        ("train.distributed_strategy=fsdp", "train.distributed_strategy"),
        ("train.optim.type=Adam", "train.optim.type"),
        ("train.optim.lr_scheduler=Cosine", "train.optim.lr_scheduler"),
        ("train.optim.monitor_name=val_acc", "train.optim.monitor_name"),
        ("model.mode=detection", "model.mode"),
        ("model.backbone.name=resnet_50", "model.backbone.name"),
        ("export.input_channel=1", "export.input_channel"),
        ("dataset.dataset_type=lazy", "dataset.dataset_type"),
        ("model.backbone.swin.out_features=[res1,res2,res3,res4]", "model.backbone.swin.out_features[0]"),
    ],
)
def test_not_in_options(override, path):
    task = "export" if override.startswith("export") else "train"
    errs = errors_of(task, override)
    assert [e.path for e in errs] == [path]
    assert "one of" in errs[0].expected


def test_all_field_errors_reported_together():
    errs = errors_of("train", "train.num_gpus=0", "train.precision=bf16", "train.num_epoch=1")
    assert {e.path for e in errs} == {"train.num_gpus", "train.precision", "train.num_epoch"}
