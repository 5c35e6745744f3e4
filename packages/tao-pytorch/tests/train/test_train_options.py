"""train.* options: optimizer groups, schedules, freeze, pretrained weights, activation
checkpointing, precision on CPU, and the errors that must come before the first step."""

from __future__ import annotations

import json
import logging
import os
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from model_helpers import NETWORKS as NETWORK_OF
from model_helpers import build_model
from train_helpers import load_cfg, make_ctx, write_spec

from tao_core.errors import TaoUserError
from tao_core.results.checkpoints import resolve_resume
from tao_pytorch.common import training
from tao_pytorch.common.checkpoint import load_checkpoint
from tao_pytorch.detr.data import build_dataloader
from tao_pytorch.detr.lightning_module import DetrLightningModule
from tao_pytorch.detr.optim import LINEAR_PROJ_NAMES, enable_activation_checkpointing
from tao_pytorch.detr.trainer import run_training

NETWORKS = ["dino", "deformable_detr"]
QUICK = {"limit_train_batches": 1, "limit_val_batches": 1}  # trainer overrides: one step, one val batch


def _cfg(tmp_path, sources, network="dino", overrides=(), **spec_kwargs):
    spec = write_spec(tmp_path / "spec.yaml", network, sources, tmp_path / "results", **spec_kwargs)
    return load_cfg(network, spec, overrides)


@pytest.mark.parametrize("network", NETWORKS)
def test_param_groups_learning_rates(tmp_path, sources, network):
    cfg = _cfg(tmp_path, sources, network, ["model.train_backbone=true", "train.optim.lr=0.001",
                                            "train.optim.lr_backbone=0.0001", "train.optim.lr_linear_proj_mult=0.5",
                                            "train.optim.weight_decay=0.01", "train.freeze=[input_proj]"])
    module = DetrLightningModule(NETWORK_OF[network], cfg)
    opt = module.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.AdamW)
    groups = {g["name"]: g for g in opt.param_groups}
    assert {n: g["lr"] for n, g in groups.items()} == pytest.approx({"main": 1e-3, "backbone": 1e-4,
                                                                      "linear_proj": 5e-4})
    assert all(g["weight_decay"] == 0.01 for g in groups.values())
    names = {id(p): n for n, p in module.model.named_parameters()}
    members = {g: {names[id(p)] for p in groups[g]["params"]} for g in groups}
    assert all(n.startswith("backbone.0.") for n in members["backbone"])
    assert members["linear_proj"] and all(any(k in n for k in LINEAR_PROJ_NAMES) for n in members["linear_proj"])
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert set().union(*members.values()) == trainable and sum(map(len, members.values())) == len(trainable)
    assert not any(n.startswith("input_proj.") for n in trainable)  # frozen by train.freeze
    assert any(n.startswith("backbone.0.body.layer1") for n in trainable)


def test_sgd_optimizer(tmp_path, sources):
    cfg = _cfg(tmp_path, sources, overrides=["train.optim.optimizer=SGD", "train.optim.momentum=0.8"])
    opt = DetrLightningModule(NETWORK_OF["dino"], cfg).configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.8


class _LrPerEpoch(pl.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.lrs.append({g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups})


@pytest.mark.parametrize("schedule, expected", [
    (["train.optim.lr_scheduler=MultiStep", "train.optim.lr_steps=[1,3]"], [1, 0.1, 0.1, 0.01]),
    (["train.optim.lr_scheduler=StepLR", "train.optim.lr_step_size=2"], [1, 1, 0.1, 0.1]),
])
def test_lr_schedule_by_epoch(tmp_path, sources, schedule, expected):
    cfg = _cfg(tmp_path, sources, overrides=["train.optim.lr=0.01", "train.optim.lr_decay=0.1", *schedule,
                                             "dataset.augmentation.scales=[64]", "dataset.batch_size=1"])
    recorder = _LrPerEpoch()
    loader = build_dataloader(cfg.dataset, "train")
    trainer = pl.Trainer(accelerator="cpu", max_epochs=len(expected), limit_train_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[recorder])
    trainer.fit(DetrLightningModule(NETWORK_OF["dino"], cfg), train_dataloaders=loader)
    assert [e["main"] for e in recorder.lrs] == pytest.approx([0.01 * f for f in expected])
    assert [e["linear_proj"] for e in recorder.lrs] == pytest.approx([0.001 * f for f in expected])


def test_unknown_freeze_path_fails_before_training(tmp_path, sources):
    cfg = _cfg(tmp_path, sources, overrides=["train.freeze=[backbone,transformer.encodr]"])
    with pytest.raises(TaoUserError, match=r"train.freeze.*transformer\.encodr"):
        run_training(NETWORK_OF["dino"], cfg, make_ctx("dino", tmp_path / "results"))
    assert not (tmp_path / "results" / "train" / "lightning_logs").exists()


def test_category_id_beyond_num_classes_fails_before_any_step(tmp_path, sources):
    data = json.loads(open(sources["train"]["json_file"]).read())
    data["annotations"][0]["category_id"] = 2
    data["categories"].append({"id": 2, "name": "dog"})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    bad_sources = {"train": {**sources["train"], "json_file": str(bad)}, "val": sources["val"]}
    cfg = _cfg(tmp_path, bad_sources)  # num_classes 2: ids must be < 2
    with pytest.raises(TaoUserError, match=r"dataset.num_classes=3"):
        run_training(NETWORK_OF["dino"], cfg, make_ctx("dino", tmp_path / "results"))
    assert not list((tmp_path / "results" / "train").glob("*.pth"))
    assert not (tmp_path / "results" / "train" / "lightning_logs").exists()


def test_pretrained_model_with_other_num_classes(dino_run, tmp_path, sources, caplog):
    pretrained = dino_run / "train" / "dino_model_latest.pth"
    cfg = _cfg(tmp_path, sources, num_classes=3, train={"pretrained_model_path": str(pretrained)})
    with caplog.at_level(logging.WARNING):
        run_training(NETWORK_OF["dino"], cfg, make_ctx("dino", tmp_path / "results"), **QUICK)
    skipped = [r.getMessage() for r in caplog.records if "shape differs" in r.getMessage()]
    assert skipped and "class_embed" in skipped[0] and "label_enc" in skipped[0]

    old = load_checkpoint(pretrained)["state_dict"]
    new = load_checkpoint(tmp_path / "results" / "train" / "dino_model_latest.pth")["state_dict"]
    assert new["model.class_embed.0.weight"].shape[0] == 3 and old["model.class_embed.0.weight"].shape[0] == 2
    key = "model.backbone.0.body.layer1.0.conv1.weight"  # frozen backbone: exactly the pretrained weights
    assert torch.equal(new[key], old[key])
    key = "model.transformer.encoder.layers.0.linear1.weight"  # one AdamW step (lr 1e-4) away from pretrained
    assert (new[key] - old[key]).abs().max() < 1e-3


@pytest.mark.parametrize("network", NETWORKS)
def test_activation_checkpointing_same_gradients(tmp_path, sources, network):
    cfg = _cfg(tmp_path, sources, network, ["model.dropout_ratio=0.0"])
    images, mask, targets = next(iter(build_dataloader(cfg.dataset, "val")))
    grads = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        module = DetrLightningModule(NETWORK_OF[network], cfg, model=build_model(network, cfg))
        keys = list(module.state_dict())
        if checkpointed:
            assert enable_activation_checkpointing(module.model) == 3  # 1 encoder + 2 decoder layers
            assert list(module.state_dict()) == keys
        torch.manual_seed(1)  # same denoising noise in both runs
        loss, _ = module._loss(module(images, mask, targets), targets)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in module.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU behaviour")
def test_fp16_on_cpu_trains_in_fp32(caplog):
    train = SimpleNamespace(precision="fp16", num_gpus=1, gpu_ids=[0])
    with caplog.at_level(logging.WARNING):
        assert training.accelerator_and_devices(train) == ("cpu", 1, "32-true")
    assert "fp32" in caplog.text


def test_dangling_latest_link_is_an_error(tmp_path):
    """Each network resumes from its own TAO-named latest file (dd_model_latest.pth for Deformable DETR)."""
    os.symlink("model_epoch_004_step_00010.pth", tmp_path / "dd_model_latest.pth")
    with pytest.raises(TaoUserError, match="no longer exists"):
        resolve_resume(None, str(tmp_path), NETWORK_OF["deformable_detr"].checkpoint_prefix)
    assert resolve_resume(None, str(tmp_path), NETWORK_OF["dino"].checkpoint_prefix) is None
    with pytest.raises(TaoUserError, match="does not exist"):
        resolve_resume(str(tmp_path / "missing.pth"), str(tmp_path), NETWORK_OF["dino"].checkpoint_prefix)


def test_ddp_sharded_maps_to_fsdp_on_gpu_and_zero_on_cpu():
    from types import SimpleNamespace

    from pytorch_lightning.strategies import DDPStrategy, FSDPStrategy

    sharded = SimpleNamespace(distributed_strategy="ddp_sharded")
    gpu = training.training_strategy(sharded, "gpu", 2)
    assert isinstance(gpu, FSDPStrategy)
    cpu = training.training_strategy(sharded, "cpu", 2)
    assert isinstance(cpu, DDPStrategy) and not isinstance(cpu, FSDPStrategy)
    assert training.training_strategy(sharded, "cpu", 1) == "auto"
