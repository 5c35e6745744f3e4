"""OneFormer datasets (semantic JSONL, COCO panoptic, COCO instance), transforms and per-task targets.

    from tao_pytorch.oneformer.data import build_dataloader
    loader = build_dataloader(cfg, "train")      # cfg: a loaded tao_core.specs.oneformer spec
    for batch in loader: batch["images"], batch["targets"], batch["task_tokens"], batch["text_tokens"]
"""

from tao_pytorch.oneformer.data.dataset import (
    OneFormerDataset,
    OneFormerImageDataset,
    TextTokens,
    collate_oneformer,
    load_sample,
)
from tao_pytorch.oneformer.data.loader import (
    build_dataloader,
    build_dataset,
    build_inference_dataset,
    fixed_pad_size,
    load_split,
)
from tao_pytorch.oneformer.data.targets import TASKS, build_targets, choose_task, cutmix
from tao_pytorch.oneformer.data.transforms import build_transforms

__all__ = [
    "TASKS",
    "OneFormerDataset",
    "OneFormerImageDataset",
    "TextTokens",
    "build_dataloader",
    "build_dataset",
    "build_inference_dataset",
    "build_targets",
    "build_transforms",
    "choose_task",
    "collate_oneformer",
    "cutmix",
    "fixed_pad_size",
    "load_sample",
    "load_split",
]
