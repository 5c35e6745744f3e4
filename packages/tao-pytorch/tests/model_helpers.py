"""Tiny model configs, a padded batch and targets shared by the model tests (CPU, a few seconds each).

A plain module (not conftest.py) so test files can import it by a name no other tests folder uses."""

import torch

from tao_core.specs.deformable_detr import DDETRModelConfig
from tao_core.specs.dino import DINOModelConfig
from tao_pytorch.detr.network import detr_network

NUM_CLASSES = 5
NETWORKS = {name: detr_network(name) for name in ("dino", "deformable_detr")}  # tests name networks; the code never does


# Small shapes for CPU tests; every other field is the spec schema's default (tao-core).
_TINY = dict(
    backbone="resnet_18",
    hidden_dim=32,
    nheads=4,
    enc_layers=1,
    dec_layers=2,
    dim_feedforward=64,
    num_queries=12,
    num_select=20,
    dropout_ratio=0.0,
)


def tiny_dino(**overrides) -> DINOModelConfig:
    return DINOModelConfig(**{**_TINY, "dn_number": 4, **overrides})


def tiny_ddetr(**overrides) -> DDETRModelConfig:
    return DDETRModelConfig(**{**_TINY, **overrides})


def build_model(network: str, cfg):
    """The model of a full experiment spec, by the network's own builder (as DetrNetwork.build_model,
    which some task tests replace to catch a model built too early)."""
    return NETWORKS[network].model_builder(cfg.model, cfg.dataset.num_classes)


def padded_batch():
    """Two images of different sizes (64x96 and 40x70) padded to 64x96, TAO's 4-channel layout."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 64, 96, generator=g)
    x[:, 3] = 0.0
    x[1, 3, 40:, :] = 1.0
    x[1, 3, :, 70:] = 1.0
    x[1, :3][x[1, 3:4].expand(3, -1, -1) > 0] = 0.0  # the collate pads with zeros
    return x


def tiny_targets():
    return [
        {"labels": torch.tensor([1, 3]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.4, 0.1, 0.2]])},
        {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.4, 0.5, 0.3, 0.3]])},
    ]
