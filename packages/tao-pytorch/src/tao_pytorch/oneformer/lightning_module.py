"""`OneFormerLightningModule(cfg, datasets)`: OneFormer's training loop for Lightning.

A batch is a collate_oneformer dict (images normalised and padded, targets {labels, masks,
sem_seg} of the sample's task, task_tokens, text_tokens, image_sizes, meta).

    training_step   model(0..255 pixels, task tokens, class-text tokens) -> set criterion (class,
                    mask, dice, contrastive; every decoder layer under deep supervision) weighted
                    with model.one_former's weights; logs train_loss (step + epoch), lr and the
                    final layer's terms
    validation_step val_loss (no contrastive term: the text branch runs in training only) and
                    each image's raw outputs scored by tao_core.tasks.oneformer on the val split's
                    own task (panoptic source: PQ, instance: mask AP, semantic: mIoU)
    on_validation_epoch_end
                    the ranks' evaluations merged; val_PQ / val_mAP / val_mIoU (and the kind's other
                    headline numbers) kept in `val_metrics` for the epoch's status line
                    (tao_pytorch.common.training.EpochStatusLine) and logged

Optimizer (train.optim): AdamW (betas (momentum, 0.999)) or SGD (momentum), one group of every
trainable parameter (the seed has no backbone multiplier); scheduler stepped per epoch:
MultiStep (x gamma at each epoch of milestones) or StepLR (x gamma every milestones[0] epochs:
the seed gives StepLR no step size of its own). Gradient clipping (train.clip_grad_norm > 0) per
train.clip_grad_type: "full" the L2 norm of all gradients together, "norm" the L2 norm of each
parameter tensor on its own, "value" each element to +-clip_grad_norm (detectron2's three,
which SHI-Labs' OneFormer trains with). train.freeze: module paths (prefixes) frozen;
model.backbone.freeze_at is applied by the backbone builder.

The network is `self.model` and the criterion `self.criterion` (its learnable contrastive
temperature is trained and saved), so checkpoint keys are "model.<name>" (TAO's layout) and
"criterion.<name>"; checkpoints carry tao_model "oneformer".
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist

from tao_core.errors import TaoUserError
from tao_core.tasks.oneformer import MAIN_METRIC, OneFormerEvaluation, kpi, postprocess_settings
from tao_pytorch.common.training import log_training_step
from tao_pytorch.detr.optim import freeze_modules
from tao_pytorch.oneformer.data import build_dataloader
from tao_pytorch.oneformer.network import NETWORK, image_outputs, model_pixels

log = logging.getLogger(__name__)

LOGGED_TERMS = ("loss_ce", "loss_mask", "loss_dice", "loss_contrastive")


def new_evaluation(cfg: Any, dataset: Any, kinds: list[str]) -> OneFormerEvaluation:
    """The tao_core evaluation of `kinds` on a OneFormerDataset (its classes and, for an instance
    source, its COCO instance ground truth)."""
    instances = dataset.coco_instances() if "instance" in kinds and dataset.fmt == "instance" else None
    return OneFormerEvaluation(kinds, dataset.table.categories(), int(cfg.model.sem_seg_head.num_classes),
                               int(cfg.model.sem_seg_head.ignore_value), instances_gt=instances,
                               **postprocess_settings(cfg))


class OneFormerLightningModule(pl.LightningModule):
    """See the module docstring. datasets: {"train", "val"} OneFormerDatasets (already checked);
    model: an already built network (default: the spec's, with its text branch)."""

    def __init__(self, cfg: Any, datasets: dict | None = None, model: torch.nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.model = NETWORK.build_model(cfg, with_text=True) if model is None else model
        self.criterion = NETWORK.build_criterion(cfg)
        freeze_modules(self.model, cfg.train.freeze or [])
        self._datasets = datasets or {}
        val = self._datasets.get("val")
        self.val_kind = val.fmt if val is not None else None  # a source is scored on its own task
        self._val_index = {int(val.records[i]["image_id"]): i for i in range(len(val))} if val is not None else {}
        self._evaluation: OneFormerEvaluation | None = None
        self.shard_optimizer = False  # set by the shared trainer for ddp_sharded with several processes
        self.val_metrics: dict[str, float] = {}  # of this epoch's validation; read by EpochStatusLine

    # ------------------------------------------------------------------ data

    def train_dataloader(self):
        return build_dataloader(self.cfg, "train", rank=self.global_rank, world_size=self.trainer.world_size,
                                seed=int(self.cfg.train.seed), dataset=self._datasets["train"])

    def val_dataloader(self):
        return build_dataloader(self.cfg, "val", rank=self.global_rank, world_size=self.trainer.world_size,
                                dataset=self._datasets["val"])

    # ------------------------------------------------------------------ steps

    def forward(self, batch: dict, with_texts: bool = False) -> dict:
        images = model_pixels(batch["images"], self.cfg.dataset)
        return self.model(images, batch["task_tokens"], batch["text_tokens"] if with_texts else None)

    def _loss(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        targets = [{"labels": t["labels"], "masks": t["masks"]} for t in batch["targets"]]
        losses = self.criterion(outputs, targets)
        weighted = self.criterion.weighted(losses)
        return sum(weighted.values()), losses

    def training_step(self, batch, batch_idx):
        outputs = self(batch, with_texts=True)
        loss, losses = self._loss(outputs, batch)
        bs = batch["images"].shape[0]
        log_training_step(self, loss, losses, bs, LOGGED_TERMS)
        return loss

    def on_validation_epoch_start(self) -> None:
        val = self._datasets.get("val")
        self._evaluation = new_evaluation(self.cfg, val, [self.val_kind]) if val is not None else None

    def validation_step(self, batch, batch_idx):
        outputs = self(batch)
        loss, _ = self._loss(outputs, batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch["images"].shape[0],
                 sync_dist=True)
        if self._evaluation is not None:
            val = self._datasets["val"]
            for item in image_outputs(outputs, batch):
                gt = val.ground_truth(self._val_index[int(item["meta"]["image_id"])])
                self._evaluation.add(item["mask_cls"], item["mask_pred"], padded_hw=item["padded_hw"],
                                     valid_hw=item["valid_hw"], ground_truth=gt)
        return loss

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self._evaluation is None:
            return
        evaluation = _merged(self._evaluation)
        try:
            results = evaluation.compute()
        except TaoUserError as err:  # e.g. a val split without a single thing instance
            log.warning("validation metrics not computed: %s", err)
            return
        self.val_metrics = kpi(results, prefix="val_")
        main = f"val_{MAIN_METRIC[self.val_kind]}"
        # every rank computed the same numbers from the merged evaluation; sync_dist only averages equals
        self.log(main, self.val_metrics[main], sync_dist=True)
        self._evaluation = None

    def on_train_epoch_start(self) -> None:
        self.val_metrics = {}

    # ------------------------------------------------------------------ optimizer

    def configure_optimizers(self):
        optim = self.cfg.train.optim
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise TaoUserError("nothing to train: every parameter is frozen (train.freeze / model.backbone.freeze_at)")
        if bool(self.cfg.train.verbose):
            for name, p in self.named_parameters():
                if p.requires_grad:
                    log.info("  lr %.3g  %s %s", float(optim.lr), name, tuple(p.shape))
        optimizer = build_optimizer(params, optim, shard_across_ranks=self.shard_optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": build_scheduler(optimizer, optim),
                                                         "interval": "epoch", "frequency": 1}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if not gradient_clip_val:
            return
        kind = self.cfg.train.clip_grad_type
        if kind == "norm":  # each parameter tensor's own norm (detectron2's "norm")
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        torch.nn.utils.clip_grad_norm_(p, float(gradient_clip_val))
            return
        self.clip_gradients(optimizer, gradient_clip_val, "value" if kind == "value" else "norm")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tao_model"] = NETWORK.name  # TAO's tag; names the network of a checkpoint


def build_optimizer(params, optim: Any, shard_across_ranks: bool = False) -> torch.optim.Optimizer:
    """train.optim.type AdamW (betas (momentum, 0.999)) or SGD (momentum) with lr and weight_decay;
    shard_across_ranks wraps it in ZeroRedundancyOptimizer (ddp_sharded on CPU processes)."""
    lr, wd, momentum = float(optim.lr), float(optim.weight_decay), float(optim.momentum)
    if optim.type == "AdamW":
        cls, kwargs = torch.optim.AdamW, {"weight_decay": wd, "betas": (momentum, 0.999)}
    elif optim.type == "SGD":
        cls, kwargs = torch.optim.SGD, {"weight_decay": wd, "momentum": momentum}
    else:
        raise TaoUserError(f"train.optim.type: got {optim.type!r}; expected AdamW or SGD")
    if shard_across_ranks:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return ZeroRedundancyOptimizer(params, optimizer_class=cls, lr=lr, **kwargs)
    return cls(params, lr=lr, **kwargs)


def build_scheduler(optimizer: torch.optim.Optimizer, optim: Any) -> torch.optim.lr_scheduler.LRScheduler:
    """MultiStep at train.optim.milestones, or StepLR every milestones[0] epochs; x gamma each time."""
    milestones = [int(m) for m in optim.milestones]
    if optim.lr_scheduler == "MultiStep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=float(optim.gamma))
    if optim.lr_scheduler == "StepLR":
        if not milestones:
            raise TaoUserError("train.optim.milestones: StepLR needs its step (epochs) as milestones[0], got []")
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=milestones[0], gamma=float(optim.gamma))
    raise TaoUserError(f"train.optim.lr_scheduler: got {optim.lr_scheduler!r}; expected MultiStep or StepLR")


def _merged(local: OneFormerEvaluation) -> OneFormerEvaluation:
    """Every rank's evaluation added up (all ranks get the same total)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return local
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    total = parts[0]
    for part in parts[1:]:
        total.merge(part)
    return total
