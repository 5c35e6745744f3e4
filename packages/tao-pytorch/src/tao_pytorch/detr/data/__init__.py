"""Data pipeline of the DETR-family networks: transforms, COCO dataset, collate, samplers, loaders.

    from tao_pytorch.detr.data import build_dataloader
    loader = build_dataloader(cfg.dataset, "train")
    for images, mask, targets in loader: ...
"""

from tao_pytorch.detr.data.dataset import CocoDetectionDataset, ImageListDataset, collate_detr
from tao_pytorch.detr.data.loader import build_dataloader, build_dataset
from tao_pytorch.detr.data.samplers import TRAIN_SAMPLERS, build_train_sampler
from tao_pytorch.detr.data.transforms import build_transforms

__all__ = [
    "TRAIN_SAMPLERS",
    "CocoDetectionDataset",
    "ImageListDataset",
    "build_dataloader",
    "build_dataset",
    "build_train_sampler",
    "build_transforms",
    "collate_detr",
]
