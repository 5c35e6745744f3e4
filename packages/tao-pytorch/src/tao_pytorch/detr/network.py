"""`DetrNetwork`: what a DETR-family network folder hands to the shared DETR tasks and training.

Each network folder (e.g. `tao_pytorch/<network>/network.py`) builds one `NETWORK` object from
its own model builder and conventions, and its task files pass it to the shared code
(`tao_pytorch.detr.trainer.run_training`, `tao_pytorch.detr.tasks.*`). The shared code reads
what it needs from the object and never imports or names a network, so a new DETR-family
network is a new folder, with no shared file edited. Scripts and tests that hold a network's
name (a spec, a command line) get its object with `detr_network(name)`, which looks in the
folder of that name, by the folder convention, not in a list.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from tao_core.errors import TaoUserError
from tao_core.spec.access import spec_get
from tao_pytorch.detr.criterion import SetCriterion, build_weight_dict
from tao_pytorch.detr.matcher import HungarianMatcher
from tao_pytorch.detr.postprocess import PostProcess, build_postprocess


@dataclass(frozen=True)
class DetrNetwork:
    """name: the command (`tao model <name>`), the `tao_model` tag of its checkpoints and the
    name in messages; checkpoint_prefix: TAO's `<prefix>_model_latest.pth`;
    model_builder: (cfg.model, num_classes, backbone_resolution=...) -> nn.Module (the network's
    `build_<name>`; backbone_resolution: dataset.augmentation.fixed_random_crop, which sizes a
    ViT's position embeddings as TAO does);
    encoder_loss_terms: cfg.model -> the `build_weight_dict` keywords of the network's extra
    outputs (encoder proposals, denoising queries); {} when it has none."""

    name: str
    checkpoint_prefix: str
    model_builder: Callable[[Any, int], nn.Module]
    encoder_loss_terms: Callable[[Any], dict]

    def build_model(self, cfg: Any) -> nn.Module:
        """The nn.Module of experiment spec `cfg` (model section + dataset.num_classes)."""
        try:
            crop = spec_get(spec_get(cfg.dataset, "augmentation"), "fixed_random_crop")
            return self.model_builder(cfg.model, cfg.dataset.num_classes, backbone_resolution=crop)
        except NotImplementedError as err:  # backbones listed by the seeds but not written yet
            raise TaoUserError(f"model.backbone: {err}") from None

    def build_criterion(self, cfg: Any) -> SetCriterion:
        """Hungarian matcher + set criterion with the spec's cost / loss coefficients."""
        m = cfg.model
        matcher = HungarianMatcher(cost_class=m.cls_loss_coef, cost_bbox=m.bbox_loss_coef,
                                   cost_giou=m.giou_loss_coef, focal_alpha=m.focal_alpha)
        weights = build_weight_dict(m.cls_loss_coef, m.bbox_loss_coef, m.giou_loss_coef, dec_layers=m.dec_layers,
                                    aux_loss=m.aux_loss, **self.encoder_loss_terms(m))
        return SetCriterion(cfg.dataset.num_classes, matcher, weights, focal_alpha=m.focal_alpha)

    def build_postprocess(self, cfg: Any) -> PostProcess:
        """Top-k decode (tao-core's numpy one, as the engines) of model.num_select detections."""
        return build_postprocess(cfg)


def detr_network(name: str) -> DetrNetwork:
    """The NETWORK of `tao_pytorch/<name>/network.py` (the folder named like the command)."""
    try:
        module = importlib.import_module(f"tao_pytorch.{name}.network")
    except ModuleNotFoundError:
        raise ValueError(f"no network folder tao_pytorch/{name}/ with a network.py") from None
    network = getattr(module, "NETWORK", None)
    if not isinstance(network, DetrNetwork):
        raise ValueError(f"tao_pytorch.{name}.network.NETWORK is not a DETR-family network")
    return network
