"""`run_training(network, cfg, ctx)`: the train task of a DETR-family network (a DetrNetwork).

Order (every user mistake surfaces before the first step):
 1. the train and val annotations are read and checked (category ids vs dataset.num_classes,
    missing images, ...) and the val ground truth kept for mAP;
 2. the model is built, train.freeze applied (unknown paths fail here), train.pretrained_model_path
    loaded (tensors of another shape, e.g. heads of another num_classes, skipped with a warning);
 3. tao_pytorch.common.training.fit: the checkpoint to resume from (train.resume_training_checkpoint_path,
    else `<results_dir>/train/<prefix>_model_latest.pth` when it exists, checked against the
    model), then Lightning fits with the Trainer every network shares (devices, strategy,
    precision, checkpoints `model_epoch_XXX_step_XXXXX.pth` + `<prefix>_model_latest.pth`,
    status lines, TensorBoard; see that module).
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl

from tao_core.data.coco import CocoIndex
from tao_core.errors import TaoUserError
from tao_pytorch.common.training import fit, load_pretrained, start_run
from tao_pytorch.detr.data.loader import build_dataloader, build_dataset
from tao_pytorch.detr.data.samplers import SPLITTING_SAMPLERS
from tao_pytorch.detr.data.transforms import describe_eval_input
from tao_pytorch.detr.lightning_module import DetrLightningModule
from tao_pytorch.detr.network import DetrNetwork

log = logging.getLogger(__name__)


class _TrainingModule(DetrLightningModule):
    """DetrLightningModule that also builds its dataloaders once the ranks are known."""

    def __init__(self, network: DetrNetwork, cfg: Any, datasets: dict, **kwargs: Any):
        super().__init__(network, cfg, **kwargs)
        self._datasets = datasets

    def _rank_world(self) -> tuple[int, int]:
        return self.global_rank, self.trainer.world_size

    def train_dataloader(self):
        rank, world = self._rank_world()
        ds_cfg = self.cfg.dataset
        dataset = self._datasets["train"]
        if (world > 1 and ds_cfg.dataset_type == "default" and ds_cfg.train_sampler in SPLITTING_SAMPLERS):
            dataset = None  # this rank reads its own share of the json files
        return build_dataloader(ds_cfg, "train", rank=rank, world_size=world, seed=int(self.cfg.train.seed),
                                dataset=dataset)

    def val_dataloader(self):
        rank, world = self._rank_world()
        return build_dataloader(self.cfg.dataset, "val", rank=rank, world_size=world, dataset=self._datasets["val"])


def val_ground_truth(dataset) -> dict:
    """COCO ground truth of a val CocoDetectionDataset with the reader's (renumbered) image ids."""
    records = [dataset.records[i] for i in range(len(dataset))]
    return CocoIndex(records, dataset.categories, dataset.sources, {}).to_coco_dict()


def run_training(network: DetrNetwork, cfg: Any, ctx: Any, **trainer_overrides: Any) -> pl.Trainer:
    """Train `network` on spec `cfg`; ctx: tao_core TaskContext (results_dir = <results_dir>/train,
    key, status). Returns the fitted Trainer."""
    train = cfg.train
    start_run(train, ctx.results_dir)

    # 1. data: read and checked now, so a bad annotation fails before the model is built
    datasets = {split: build_dataset(cfg.dataset, split) for split in ("train", "val")}
    batch_size = int(cfg.dataset.batch_size)
    if len(datasets["train"]) < batch_size:
        raise TaoUserError(
            f"dataset.batch_size={batch_size} but the training set has {len(datasets['train'])} images: "
            "the last incomplete batch is dropped, so no step would run; lower dataset.batch_size")
    val_gt = val_ground_truth(datasets["val"])
    log.info("train: %d images, val: %d images, %d classes", len(datasets["train"]), len(datasets["val"]),
             cfg.dataset.num_classes)
    log.info("validation (val_mAP) sees the val images %s; evaluate with evaluate.input_height/input_width "
             "(the export size) resizes to exactly that size, so its mAP differs",
             describe_eval_input(cfg.dataset.augmentation))

    # 2. model
    model = network.build_model(cfg)
    load_pretrained(model, train, ctx.key)
    module = _TrainingModule(network, cfg, datasets, val_gt=val_gt, model=model)

    # 3. resume check, Trainer, fit
    steps = max(1, len(datasets["train"]) // batch_size // max(1, int(train.num_gpus) * int(train.num_nodes)))
    return fit(module, cfg, ctx, network.checkpoint_prefix, steps, **trainer_overrides)
