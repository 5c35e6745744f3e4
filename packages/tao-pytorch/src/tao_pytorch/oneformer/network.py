"""OneFormer as its tasks and the shared training see it: names, builders, and the two
conventions between the data pipeline and the model.

- `NETWORK.name` is the command and the `tao_model` tag of checkpoints, `NETWORK.checkpoint_prefix`
  TAO's `oneformer_model_latest.pth` (seed 004);
- `model_pixels(images, dataset_cfg)`: the loader yields normalised images padded with zeros
  (the shared collate, detectron2's ImageList: padding = the mean colour), the model takes 0..255
  RGB and normalises itself (SHI-Labs' convention, the one the exported ONNX keeps). Undoing the
  normalisation gives the model exactly the input it would have built, padding included;
- `image_outputs(outputs, batch)`: the network outputs of a batch split per image, in numpy, with
  the sizes tao_core.tasks.oneformer needs (padded input size, resized image inside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tao_core.errors import TaoUserError
from tao_core.processing.oneformer import normalisation
from tao_core.tasks.oneformer_outputs import task_tokens as core_task_tokens
from tao_pytorch.oneformer.model.criterion import SetCriterion, build_criterion
from tao_pytorch.oneformer.model.oneformer import build_oneformer


@dataclass(frozen=True)
class OneFormerNetwork:
    name: str = "oneformer"
    checkpoint_prefix: str = "oneformer"

    def build_model(self, cfg: Any, with_text: bool = True) -> nn.Module:
        """The OneFormer of spec `cfg`; with_text=False leaves out the text branch (only training's
        contrastive loss uses it)."""
        try:
            return build_oneformer(cfg, with_text=with_text)
        except NotImplementedError as err:  # backbones the seed lists but tao-pytorch has not written yet
            raise TaoUserError(str(err)) from None

    def build_criterion(self, cfg: Any) -> SetCriterion:
        """The set criterion with the spec's loss weights (model.one_former) and num_classes."""
        return build_criterion(cfg.model.one_former, int(cfg.model.sem_seg_head.num_classes))


NETWORK = OneFormerNetwork()


def model_pixels(images: torch.Tensor, dataset_cfg: Any) -> torch.Tensor:
    """Loader images (normalised, zero-padded) -> the 0..255 RGB the model takes (see the module docstring)."""
    mean, std = normalisation(dataset_cfg)  # 0..1 scale, what the loader normalised with
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * std_t + mean_t) * 255.0


def task_tokens(task: str, batch_size: int, cfg: Any) -> torch.Tensor:
    """[B, context_length] token ids of "The task is {task}" (the exported graph's input, as numbers)."""
    return torch.from_numpy(core_task_tokens(task, int(cfg.model.text_encoder.context_length), batch_size))


def image_outputs(outputs: dict, batch: dict) -> list[dict]:
    """Per image of the batch: {"mask_cls" (Q, C+1), "mask_pred" (Q, h, w) float32 numpy,
    "padded_hw" (the batch's input size), "valid_hw" (the resized image), "meta" (image_id, orig_size, path)}."""
    logits = outputs["pred_logits"].detach().float().cpu().numpy()
    masks = outputs["pred_masks"].detach().float().cpu().numpy()
    padded = tuple(int(v) for v in batch["images"].shape[-2:])
    return [{"mask_cls": logits[i], "mask_pred": masks[i], "padded_hw": padded,
             "valid_hw": tuple(int(v) for v in batch["image_sizes"][i]), "meta": batch["meta"][i]}
            for i in range(logits.shape[0])]
