"""The fidelity cases: a small DINO and a small Deformable DETR, their weights, input and targets.

Everything is deterministic and independent of how the modules happen to be constructed:
each tensor of the state dict is drawn from a generator seeded by its (reference) key name, so
reordering module creation changes nothing, while renaming a key or changing a shape does.
hidden_dim is 256 because IDEA DINO's query sine embedding hard-codes 128 features per
coordinate, and the fixture outputs were checked against the reference code on these exact
weights (see README.md). Used by test_fidelity.py and make_fixtures.py (same folder).
"""

import math
import zlib
from collections import OrderedDict
from types import SimpleNamespace

import torch

NUM_CLASSES = 5
NETWORKS = ("dino", "deformable_detr")
TRAIN_SEED = 1234  # torch.manual_seed before the DINO training step (denoising noise)

_COMMON = dict(
    backbone="resnet_18",
    train_backbone=True,
    pretrained_backbone_path=None,
    hidden_dim=256,
    nheads=8,
    enc_layers=1,
    dec_layers=2,
    dim_feedforward=128,
    num_queries=12,
    num_feature_levels=4,
    return_interm_indices=[1, 2, 3, 4],
    enc_n_points=4,
    dec_n_points=4,
    dropout_ratio=0.0,
    aux_loss=True,
    cls_loss_coef=2.0,
    bbox_loss_coef=5.0,
    giou_loss_coef=2.0,
    focal_alpha=0.25,
)
MODEL_CFG = {
    "dino": dict(
        _COMMON,
        use_dn=True,
        dn_number=4,
        dn_box_noise_scale=1.0,
        dn_label_noise_ratio=0.5,
        pe_temperatureH=20,
        pe_temperatureW=20,
        interm_loss_coef=1.0,
        no_interm_box_loss=False,
    ),
    "deformable_detr": dict(_COMMON, with_box_refine=True),
}
# DINO is built with its builder's two_stage_type "standard" and embed_init_tgt True, Deformable DETR
# without two-stage (TAO's fixed choices); every field not listed above is the spec schema's default.


def experiment_cfg(network: str) -> SimpleNamespace:
    """The experiment spec of a case: tao-core's model section of the network, num_classes."""
    from tao_core.specs.deformable_detr import DDETRModelConfig
    from tao_core.specs.dino import DINOModelConfig

    schema = {"dino": DINOModelConfig, "deformable_detr": DDETRModelConfig}[network]
    return SimpleNamespace(model=schema(**MODEL_CFG[network]), dataset=SimpleNamespace(num_classes=NUM_CLASSES))


def network_of(name: str):
    """The network's DetrNetwork: its model, criterion and post-processing builders."""
    from tao_pytorch.detr.network import detr_network

    return detr_network(name)


def _draw(key: str, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    name = key.rsplit(".", 1)[-1]
    if name == "running_var":
        return 0.5 + torch.rand(shape, generator=g)
    if len(shape) == 1:
        base = 1.0 if name == "weight" else 0.0  # norm scales around 1, biases / means around 0
        return base + 0.1 * torch.randn(shape, generator=g)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=g) * math.sqrt(1.0 / fan_in)


def layout_of(model: torch.nn.Module):
    """[(key, shape, alias)]: the model's state-dict keys in order; `alias` names the first key of a
    tensor the model shares under several names (heads shared across decoder layers), else ''."""
    layout, first = [], {}
    for key, t in model.state_dict().items():
        if not t.is_floating_point():
            raise TypeError(f"{key}: only floating-point state is expected, got {t.dtype}")
        alias = first.setdefault(t.data_ptr(), key)
        layout.append((key, tuple(t.shape), "" if alias == key else alias))
    return layout


def weights_from_layout(layout) -> "OrderedDict[str, torch.Tensor]":
    """Deterministic weights for a stored layout (reference key names): shared names get the
    value of their first name, as a reference checkpoint holds them."""
    out = OrderedDict()
    for key, shape, alias in layout:
        out[key] = out[alias] if alias else _draw(key, tuple(shape))
    return out


def build(network: str, layout=None) -> torch.nn.Module:
    """The network with the deterministic weights of `layout` (default: the model's own keys),
    loaded with strict=True, so a renamed or reshaped key fails."""
    model = network_of(network).build_model(experiment_cfg(network))
    model.load_state_dict(weights_from_layout(layout or layout_of(model)), strict=True)
    return model


def padded_input() -> torch.Tensor:
    """(2, 4, 64, 96): image 0 fills the canvas, image 1 is 48 x 72 padded right / bottom (TAO's
    4-channel layout: 3 normalised channels + padding mask, padded pixels zero)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 64, 96, generator=g)
    x[:, 3] = 0.0
    x[1, 3, 48:, :] = 1.0
    x[1, 3, :, 72:] = 1.0
    x[1, :3] *= 1.0 - x[1, 3]
    return x


def targets():
    return [
        {
            "labels": torch.tensor([1, 3, 0]),
            "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.4, 0.1, 0.2], [0.7, 0.6, 0.3, 0.4]]),
        },
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.4, 0.5, 0.3, 0.3]])},
    ]


def _flatten(prefix: str, out: dict, into: dict) -> None:
    into[f"{prefix}pred_logits"] = out["pred_logits"].detach()
    into[f"{prefix}pred_boxes"] = out["pred_boxes"].detach()


def named_outputs(network: str, model: torch.nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """Every tensor the fixture pins: inference outputs (final, per decoder layer, DINO's encoder
    proposals) and, for DINO, one seeded training step (denoising queries included); for both,
    the weighted loss terms of a training step."""
    crit = network_of(network).build_criterion(experiment_cfg(network))
    x = padded_input()
    res = OrderedDict()
    model.eval()
    with torch.no_grad():
        out = model(x)
    _flatten("eval.", out, res)
    for i, aux in enumerate(out["aux_outputs"]):
        _flatten(f"eval.aux{i}.", aux, res)
    if "interm_outputs" in out:
        _flatten("eval.interm.", out["interm_outputs"], res)
        res["eval.interm_pre.pred_boxes"] = out["interm_outputs_for_matching_pre"]["pred_boxes"]

    model.train()
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # leave the caller's RNG state alone
        torch.manual_seed(TRAIN_SEED)
        out = model(x, targets())
        losses = crit(out, targets())
    model.eval()
    if network == "dino":
        _flatten("train.", out, res)
        _flatten("train.dn.", out["dn_meta"]["output_known_lbs_bboxes"], res)
    for k in sorted(crit.weight_dict):
        res[f"loss.{k}"] = losses[k].detach().reshape(())
    return res
