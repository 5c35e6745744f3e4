"""Tiny model configs, a padded batch and targets shared by the model tests (CPU, a few seconds each).

A plain module (not conftest.py) so test files can import it by a name no other tests folder uses."""

from types import SimpleNamespace

import torch

NUM_CLASSES = 5


def tiny_cfg(**overrides):
    cfg = dict(
        backbone="resnet_18",
        train_backbone=True,
        hidden_dim=32,
        nheads=4,
        enc_layers=1,
        dec_layers=2,
        dim_feedforward=64,
        num_queries=12,
        num_feature_levels=4,
        return_interm_indices=[1, 2, 3, 4],
        dropout_ratio=0.0,
        with_box_refine=True,
        two_stage=False,
        aux_loss=True,
        use_dn=True,
        dn_number=4,
        dn_box_noise_scale=1.0,
        dn_label_noise_ratio=0.5,
        pe_temperatureH=20,
        pe_temperatureW=20,
        fix_refpoints_hw=-1,
        num_select=20,
    )
    cfg.update(overrides)
    return SimpleNamespace(**cfg)


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
