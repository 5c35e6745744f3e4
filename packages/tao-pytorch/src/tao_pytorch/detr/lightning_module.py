"""`DetrLightningModule(network, cfg)`: the training loop of a DETR-family network for Lightning.

One batch of the data pipeline is `(images (B,3,H,W), mask (B,H,W) True on padding, targets)`;
the model sees TAO's 4-channel input (image + padding-mask channel) and the targets (for
networks with denoising queries).

    training_step   loss = criterion(model(x, targets)) summed with the spec's weights; logs
                    train_loss (step + epoch), lr, and every weighted term and class_error
    validation_step val_loss, and COCO detections of every image (the network's post-processing:
                    tao-core's numpy top-k decode, boxes in original-image pixels, image ids of
                    the val index)
    on_validation_epoch_end
                    detections of all ranks gathered (a DistributedSampler's padding duplicates
                    dropped), val_mAP / val_mAP50 by tao_core.metrics.coco against the val ground
                    truth the reader validated, kept in `val_metrics` for the epoch's status line
                    (tao_pytorch.common.training.EpochStatusLine)

The network is `self.model`, so checkpoint state_dict keys are "model.<name>" (TAO's layout,
which `tao_pytorch.common.checkpoint.load_model_weights` strips).
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist

from tao_core.metrics.coco import evaluate as coco_evaluate
from tao_core.processing.detr import to_coco_results
from tao_pytorch.common.training import log_training_step
from tao_pytorch.detr.criterion import total_loss
from tao_pytorch.detr.data.dataset import with_mask_channel
from tao_pytorch.detr.network import DetrNetwork
from tao_pytorch.detr.optim import (
    build_optimizer,
    build_scheduler,
    enable_activation_checkpointing,
    freeze_modules,
    param_groups,
)

log = logging.getLogger(__name__)

# Per-term losses shown in TensorBoard (the final decoder layer; the total covers every term).
LOGGED_TERMS = ("loss_ce", "loss_bbox", "loss_giou", "class_error")


class DetrLightningModule(pl.LightningModule):
    """Lightning wrapper of one DETR network.

    network: the network's DetrNetwork (its model, criterion and post-processing builders);
    cfg: the experiment spec (model, dataset, train).
    val_gt: the COCO ground truth dict of the val split with the reader's image ids (None: no mAP).
    model: an already built network (default: network.build_model(cfg)).
    """

    def __init__(self, network: DetrNetwork, cfg: Any, val_gt: dict | None = None,
                 model: torch.nn.Module | None = None):
        super().__init__()
        self.network = network
        self.cfg = cfg
        self.model = network.build_model(cfg) if model is None else model
        # A plain attribute (the criterion holds no tensors): keeps it out of state_dict.
        self.__dict__["criterion"] = network.build_criterion(cfg)
        self.postprocess = network.build_postprocess(cfg)
        self.val_gt = val_gt
        train = cfg.train
        freeze_modules(self.model, train.freeze or [])
        if train.activation_checkpoint:
            n = enable_activation_checkpointing(self.model)
            log.info("activation checkpointing: %d transformer layers recomputed in the backward pass", n)
        self.shard_optimizer = False  # set by the trainer for ddp_sharded with several processes
        self._val_dets: dict[int, list[dict]] = {}
        self.val_metrics: dict[str, float] = {}  # of this epoch's validation; read by EpochStatusLine

    # ------------------------------------------------------------------ steps

    def forward(self, images: torch.Tensor, mask: torch.Tensor, targets=None):
        return self.model(with_mask_channel(images, mask), targets)

    def _loss(self, outputs, targets) -> tuple[torch.Tensor, dict]:
        losses = self.criterion(outputs, targets)
        weights = self.criterion.weight_dict
        return total_loss(losses, weights), losses

    def training_step(self, batch, batch_idx):
        images, mask, targets = batch
        outputs = self(images, mask, targets)
        loss, losses = self._loss(outputs, targets)
        bs = images.shape[0]
        log_training_step(self, loss, losses, bs, LOGGED_TERMS)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_dets = {}

    def validation_step(self, batch, batch_idx):
        images, mask, targets = batch
        outputs = self(images, mask, targets)
        loss, _ = self._loss(outputs, targets)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=images.shape[0],
                 sync_dist=True)
        if self.val_gt is None:
            return loss
        orig_sizes = torch.stack([t["orig_size"] for t in targets])
        decoded = self.postprocess(outputs, orig_sizes)
        image_ids = [int(t["image_id"].reshape(-1)[0]) for t in targets]
        for image_id, det in zip(image_ids, decoded, strict=True):
            self._val_dets[image_id] = to_coco_results([det], [image_id])
        return loss

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self.val_gt is None:
            return
        dets = _gather_by_image(self._val_dets)
        metrics = coco_map(self.val_gt, dets, self.cfg.dataset.get("eval_class_ids"))
        self.val_metrics = metrics
        # every rank computed the same numbers from the gathered detections; sync_dist only averages equals
        self.log("val_mAP", metrics["val_mAP"], sync_dist=True)
        self.log("val_mAP50", metrics["val_mAP50"], sync_dist=True)
        self._val_dets = {}

    def on_train_epoch_start(self) -> None:
        self.val_metrics = {}

    # ------------------------------------------------------------------ optimizer

    def configure_optimizers(self):
        train = self.cfg.train
        groups = param_groups(self.model, train.optim, verbose=bool(train.verbose))
        optimizer = build_optimizer(groups, train.optim, shard_across_ranks=self.shard_optimizer)
        scheduler = build_scheduler(optimizer, train.optim)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "frequency": 1}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tao_model"] = self.network.name  # TAO's tag; names the network of a checkpoint


def coco_map(gt: dict, dets: list[dict], eval_class_ids=None) -> dict[str, float]:
    """val_mAP / val_mAP50 of COCO detections; eval_class_ids restricts both sides to those ids.

    Detections of ids the ground truth has no category for (the background logit 0, unused ids
    of a num_classes larger than needed) are dropped here; COCO evaluation ignores them anyway.
    """
    known = {c["id"] for c in gt["categories"]}
    dets = [d for d in dets if d["category_id"] in known]
    if eval_class_ids:
        keep = {int(c) for c in eval_class_ids}
        gt = {**gt, "categories": [c for c in gt["categories"] if c["id"] in keep],
              "annotations": [a for a in gt["annotations"] if a["category_id"] in keep]}
        dets = [d for d in dets if d["category_id"] in keep]
    result = coco_evaluate(gt, dets, "bbox")
    # -1 (no GT object at all) reads as 0 in a KPI
    return {"val_mAP": max(float(result["mAP"]), 0.0), "val_mAP50": max(float(result["mAP50"]), 0.0)}


def _gather_by_image(local: dict[int, list[dict]]) -> list[dict]:
    """COCO detections of every rank, one entry per image (DistributedSampler repeats a few
    images to even out the ranks; their detections must count once)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, local)
    else:
        parts = [local]
    merged: dict[int, list[dict]] = {}
    for part in parts:
        for image_id, dets in part.items():
            merged.setdefault(image_id, dets)
    return [d for image_id in sorted(merged) for d in merged[image_id]]
