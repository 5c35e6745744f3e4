"""ViT-Adapter (Chen et al. 2023) trunk for DETR detectors: `vit_large_nvdinov2` (ViT-L/16 with
NVIDIA's NV-DINOv2 weights) and a small variant of the same layout for CPU runs and tests.

A plain ViT (`vit.py`) sees the image as stride-16 tokens; next to it a small convolutional
"spatial prior module" (`spm`) makes stride 8 / 16 / 32 maps (and stride 4 when level 0 is asked
for). The ViT blocks are split into groups (`interaction_indexes`); before each group an
*injector* lets the ViT tokens attend (multi-scale deformable attention) to the three spm maps,
after it an *extractor* lets the spm maps attend to the tokens (plus a depthwise-conv FFN). The
last group has two extra extractors. Outputs: the spm maps (stride 4 = transposed-conv upsampling
of stride 8 added to the spm stem) plus the final ViT tokens resized to each stride, each through
a BatchNorm `out_norm<i>`. Every level has embed_dim channels.

Module tree, parameter names and sizes are those of TAO's DINO ViT-Adapter
(nvidia_tao_pytorch/cv/dino/model/vision_transformer/), so TAO's checkpoints load by name:
`pos_embed` (1, 1 + (resolution/16)^2, D) (row 0 is the class token's, unused),
`patch_embed.proj.*`, `blocks.<i>.*`, `level_embed` (3, D), `spm.{stem,conv2,conv3,conv4}.*`,
`spm.fc{1..4}.*`, `interactions.<i>.injector.{query_norm,feat_norm,attn,ls}.*`,
`interactions.<i>.extractor.{query_norm,feat_norm,attn,ffn.fc1,ffn.dwconv.dwconv,ffn.fc2,ffn_norm}.*`,
`interactions.<last>.extra_extractors.{0,1}.*`, `up.*`, `out_norm<i>.*`. As in TAO, `spm.fc1` and
`up` exist only when level 0 is returned.

Differences from TAO, none of which changes a weight or an output at TAO's input sizes
(multiples of 32): other sizes are zero-padded on the right / bottom to a multiple of 32 and the
outputs cropped to ceil(size / stride) (TAO needs multiples of 32); BatchNorm2d instead of
SyncBatchNorm (the same state dict; with several GPUs the statistics stay per GPU unless the
trainer converts them, torch.nn.SyncBatchNorm.convert_sync_batchnorm); activation checkpointing
also covers the ViT blocks (the activation-heavy part at 1024x1024).
"""

import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.backbones.levels import check_return_indices
from tao_pytorch.backbones.vit import LN_EPS, Block, LayerScale, PatchEmbed, drop_path_rates
from tao_pytorch.backbones.vit_layers import DropPath
from tao_pytorch.backbones.weights import load_backbone_weights
from tao_pytorch.detr.msda import MSDeformAttn

log = logging.getLogger(__name__)

# TAO's vit_large_nvdinov2 (vit_adapter.py vit_model_dict); `resolution` is TAO's default input
# side (dataset.augmentation.fixed_random_crop), which sets the size of pos_embed.
# vit_tiny_nvdinov2: the same layout at test size (not a published model).
VIT_ADAPTER_SPECS = {
    "vit_large_nvdinov2": dict(
        embed_dim=1024, depth=24, num_heads=16, mlp_hidden=5472, mlp="swiglu", layer_scale=1e-5,
        drop_path_rate=0.4, conv_inplane=56, deform_heads=16, n_points=4, deform_ratio=0.5, cffn_ratio=0.25,
        interaction_indexes=((0, 5), (6, 11), (12, 17), (18, 23)), resolution=1024,
    ),
    "vit_tiny_nvdinov2": dict(
        embed_dim=64, depth=4, num_heads=2, mlp_hidden=342, mlp="swiglu", layer_scale=1e-5,
        drop_path_rate=0.1, conv_inplane=16, deform_heads=2, n_points=4, deform_ratio=0.5, cffn_ratio=0.25,
        interaction_indexes=((0, 0), (1, 1), (2, 2), (3, 3)), resolution=128,
    ),
}
PATCH_SIZE = 16
PAD_MULTIPLE = 32  # the stride-32 spm map must be exactly half the token grid
EXTRA_EXTRACTORS = 2
STRIDES = (4, 8, 16, 32)
# Keys an NV-DINOv2 / timm ViT classifier checkpoint has and the trunk does not.
CLASSIFIER_KEYS = ("cls_token", "mask_token", "register_tokens", "reg_token", "norm.", "fc_norm.", "head.")
# The adapter's own layers: a plain ViT checkpoint lacks them (they keep their initial values).
ADAPTER_KEYS = ("level_embed", "spm.", "interactions.", "up.", "out_norm")


def _grid_centres(h: int, w: int, device) -> torch.Tensor:
    """(h*w, 2) normalised (x, y) centres of an h x w map, row-major."""
    ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)


class DeformInputs:
    """Reference points and level layout of the injector (tokens query the three spm maps) and the
    extractors (the spm maps query the tokens), for an h x w token grid (h, w even)."""

    def __init__(self, h: int, w: int, device):
        self.h, self.w = h, w
        self.spm_shapes = [(2 * h, 2 * w), (h, w), (h // 2, w // 2)]
        self.token_shapes = [(h, w)]
        self.spm_start = torch.tensor([0, 4 * h * w, 5 * h * w], device=device)
        self.token_start = torch.zeros(1, dtype=torch.long, device=device)
        # (1, Lq, 1, 2): broadcast over the batch and the attended levels
        self.token_refs = _grid_centres(h, w, device)[None, :, None]
        self.spm_refs = torch.cat([_grid_centres(a, b, device) for a, b in self.spm_shapes])[None, :, None]


class DWConv(nn.Module):
    """The same 3x3 depthwise conv applied to each of the three spm levels of a token sequence."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        shapes = [(2 * h, 2 * w), (h, w), (h // 2, w // 2)]
        parts = x.split([a * b_ for a, b_ in shapes], dim=1)
        out = [
            self.dwconv(p.transpose(1, 2).reshape(b, c, a, b_)).flatten(2).transpose(1, 2)
            for p, (a, b_) in zip(parts, shapes)
        ]
        return torch.cat(out, dim=1)


class ConvFFN(nn.Module):
    """fc1 -> depthwise conv -> GELU -> fc2 (the extractor's FFN)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, h, w):
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class Injector(nn.Module):
    """ViT tokens += layer-scaled deformable attention from the tokens to the three spm maps."""

    def __init__(self, dim, heads, n_points, ratio, layer_scale):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.feat_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = MSDeformAttn(dim, n_levels=3, n_heads=heads, n_points=n_points, value_ratio=ratio)
        self.ls = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor, c: torch.Tensor, d: DeformInputs) -> torch.Tensor:
        attn = self.attn(self.query_norm(x), d.token_refs, self.feat_norm(c), d.spm_shapes, d.spm_start)
        return x + self.ls(attn)


class Extractor(nn.Module):
    """spm tokens += deformable attention from them to the ViT tokens, then += ConvFFN."""

    def __init__(self, dim, heads, n_points, ratio, cffn_ratio, drop_path):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.feat_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = MSDeformAttn(dim, n_levels=1, n_heads=heads, n_points=n_points, value_ratio=ratio)
        self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
        self.ffn_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, c: torch.Tensor, x: torch.Tensor, d: DeformInputs) -> torch.Tensor:
        c = c + self.attn(self.query_norm(c), d.spm_refs, self.feat_norm(x), d.token_shapes, d.token_start)
        return c + self.drop_path(self.ffn(self.ffn_norm(c), d.h, d.w))


class InteractionBlock(nn.Module):
    """Injector, the group's ViT blocks (owned by the trunk: TAO's names are `blocks.<i>`), extractor(s)."""

    def __init__(self, dim, heads, n_points, ratio, cffn_ratio, layer_scale, drop_path, extra: bool):
        super().__init__()
        self.injector = Injector(dim, heads, n_points, ratio, layer_scale)
        self.extractor = Extractor(dim, heads, n_points, ratio, cffn_ratio, drop_path)
        self.extra_extractors = (
            nn.Sequential(*[Extractor(dim, heads, n_points, ratio, cffn_ratio, drop_path) for _ in range(EXTRA_EXTRACTORS)])
            if extra
            else None
        )

    def extractors(self) -> List[Extractor]:
        return [self.extractor] + (list(self.extra_extractors) if self.extra_extractors is not None else [])


def _conv_bn_relu(cin: int, cout: int, stride: int) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """Conv stem -> maps at strides 4 (inplanes), 8 (2x), 16 (4x), 32 (4x), each 1x1-projected to dim
    (stride 4 only when level 0 is returned, as in TAO)."""

    def __init__(self, inplanes: int, dim: int, with_stride4: bool):
        super().__init__()
        self.stem = nn.Sequential(
            *_conv_bn_relu(3, inplanes, 2), *_conv_bn_relu(inplanes, inplanes, 1), *_conv_bn_relu(inplanes, inplanes, 1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.conv2 = nn.Sequential(*_conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, dim, 1) if with_stride4 else None
        self.fc2 = nn.Conv2d(2 * inplanes, dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, dim, 1)

    def forward(self, x: torch.Tensor):
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        c1 = self.fc1(c1) if self.fc1 is not None else None
        return c1, self.fc2(c2), self.fc3(c3), self.fc4(c4)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _map(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return t.transpose(1, 2).reshape(t.shape[0], -1, h, w)


class ViTAdapter(nn.Module):
    """ViT-Adapter trunk returning the BatchNorm-ed levels in `return_indices` (0..3, strides 4..32)."""

    def __init__(self, name: str, return_indices: Sequence[int] = (1, 2, 3), resolution: Optional[int] = None,
                 drop_path_rate: Optional[float] = None):
        super().__init__()
        if name not in VIT_ADAPTER_SPECS:
            raise ValueError(f"unknown ViT-Adapter {name!r}; choose one of {sorted(VIT_ADAPTER_SPECS)}")
        spec = VIT_ADAPTER_SPECS[name]
        resolution = int(resolution or spec["resolution"])
        if resolution % PATCH_SIZE:
            raise ValueError(f"{name}: resolution must be a multiple of {PATCH_SIZE}, got {resolution}")
        dim, depth = spec["embed_dim"], spec["depth"]
        rate = spec["drop_path_rate"] if drop_path_rate is None else drop_path_rate
        self.name = name
        self.depth = depth  # TAO's layer-wise lr decay counts these blocks
        self.embed_dim = dim
        self.return_indices = check_return_indices(return_indices)
        self.interaction_indexes = [tuple(g) for g in spec["interaction_indexes"]]
        self.grid = resolution // PATCH_SIZE
        self.num_channels = [dim] * len(self.return_indices)
        self.strides = [STRIDES[i] for i in self.return_indices]
        with_stride4 = 0 in self.return_indices

        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, dim))
        self.patch_embed = PatchEmbed(PATCH_SIZE, dim)
        dpr = drop_path_rates(rate, depth)
        self.blocks = nn.Sequential(
            *[Block(dim, spec["num_heads"], spec["mlp_hidden"], spec["mlp"], spec["layer_scale"], dpr[i])
              for i in range(depth)]
        )
        self.level_embed = nn.Parameter(torch.zeros(3, dim))
        self.spm = SpatialPriorModule(spec["conv_inplane"], dim, with_stride4)
        n = len(self.interaction_indexes)
        self.interactions = nn.Sequential(
            *[InteractionBlock(dim, spec["deform_heads"], spec["n_points"], spec["deform_ratio"], spec["cffn_ratio"],
                               spec["layer_scale"], rate, extra=i == n - 1)
              for i in range(n)]
        )
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2) if with_stride4 else None
        for i in self.return_indices:
            self.add_module(f"out_norm{i}", nn.BatchNorm2d(dim))
        self.keys_not_pretrained: Optional[List[str]] = None  # set by load_pretrained_vit_adapter
        self._init_weights()

    def _init_weights(self):
        # TAO's scheme: truncated normal linears, He (fan-out) normal convs, MSDA's own init,
        # standard-normal level embeddings.
        if self.pos_embed.is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for part in (self.spm, self.interactions, self.up):
            for m in part.modules() if part is not None else []:
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                    nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.level_embed)

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        """(1, h*w, D) patch position embeddings, resized bicubically from the training grid."""
        pos = self.pos_embed[:, 1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        if (h, w) != (self.grid, self.grid):
            pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
        return _tokens(pos)

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        b, _, h_in, w_in = images.shape
        pad_h, pad_w = -h_in % PAD_MULTIPLE, -w_in % PAD_MULTIPLE
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        h, w = images.shape[-2] // PATCH_SIZE, images.shape[-1] // PATCH_SIZE
        d = DeformInputs(h, w, images.device)

        c1, c2, c3, c4 = self.spm(images)
        c = torch.cat([_tokens(c2) + self.level_embed[0], _tokens(c3) + self.level_embed[1],
                       _tokens(c4) + self.level_embed[2]], dim=1)
        x = _tokens(self.patch_embed(images)) + self._pos_embed(h, w)
        for inter, (first, last) in zip(self.interactions, self.interaction_indexes):
            x = inter.injector(x, c, d)
            for blk in self.blocks[first : last + 1]:
                x = blk(x)
            for extractor in inter.extractors():
                c = extractor(c, x, d)

        c2, c3, c4 = c.split([4 * h * w, h * w, (h // 2) * (w // 2)], dim=1)
        x3 = _map(x, h, w)
        levels: Dict[int, torch.Tensor] = {
            1: _map(c2, 2 * h, 2 * w) + F.interpolate(x3, size=(2 * h, 2 * w), mode="bilinear", align_corners=False),
            2: _map(c3, h, w) + x3,
            3: _map(c4, h // 2, w // 2) + F.interpolate(x3, size=(h // 2, w // 2), mode="bilinear", align_corners=False),
        }
        if self.up is not None:
            levels[0] = (self.up(_map(c2, 2 * h, 2 * w)) + c1
                         + F.interpolate(x3, size=(4 * h, 4 * w), mode="bilinear", align_corners=False))
        outs = []
        for i in self.return_indices:
            out = getattr(self, f"out_norm{i}")(levels[i])
            if pad_h or pad_w:
                s = STRIDES[i]
                out = out[:, :, : -(-h_in // s), : -(-w_in // s)]
            outs.append(out.contiguous())
        return outs

    def checkpoint_units(self) -> List[nn.Module]:
        """Recomputed in the backward pass under activation checkpointing: each injector, extractor
        (what TAO checkpoints) and ViT block."""
        units: List[nn.Module] = list(self.blocks)
        for inter in self.interactions:
            units += [inter.injector] + inter.extractors()
        return units

    def lr_layer_id(self, name: str) -> Tuple[int, int]:
        """(layer id, number of blocks L) of parameter `name` for layer-wise lr decay, as TAO numbers
        them: pos_embed / patch_embed 0, block i -> i + 1, the adapter's layers L + 1."""
        if name.startswith(("pos_embed", "patch_embed.")):
            return 0, self.depth
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1, self.depth
        return self.depth + 1, self.depth

    def freeze(self, train_backbone: bool) -> None:
        """train_backbone=False freezes the trunk, except the layers a pretrained file did not
        provide (`keys_not_pretrained`: the adapter when NV-DINOv2 ViT weights were loaded), which
        TAO keeps training; BatchNorms whose parameters are all frozen keep their statistics."""
        keep = set(self.keys_not_pretrained or [])
        for pname, p in self.named_parameters():
            p.requires_grad_(train_backbone or pname in keep)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d) and not any(p.requires_grad for p in m.parameters()):
                m.eval()
        return self


def _resize_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + g*g, D) -> (1, 1 + grid*grid, D): the patch part resized bicubically, row 0 kept."""
    g = int(round(math.sqrt(pos.shape[1] - 1)))
    if g * g != pos.shape[1] - 1:
        raise ValueError(f"pos_embed of shape {tuple(pos.shape)} is not 1 + a square grid of patches")
    patches = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1].float(), _tokens(patches)], dim=1).to(pos.dtype)


def _adapt_vit_state(body: ViTAdapter, state: dict, path) -> dict:
    """Fit a checkpoint's ViT geometry to `body`, as TAO does before loading: pos_embed resized to the
    body's grid (its resolution), a patch-embedding kernel of another size (e.g. 14) resized to 16."""
    for prefix in ("model.",):  # TAO classification / NV-DINOv2 export wrappers
        if any(k.startswith(prefix + "blocks.") for k in state):
            state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    pos = state.get("pos_embed")
    if pos is not None and pos.dim() == 3 and pos.shape[1] != body.pos_embed.shape[1]:
        state["pos_embed"] = _resize_pos_embed(pos, body.grid)
        log.info("%s: pos_embed resized %s -> %s", path, tuple(pos.shape), tuple(state["pos_embed"].shape))
    kernel = state.get("patch_embed.proj.weight")
    if kernel is not None and kernel.dim() == 4 and tuple(kernel.shape[-2:]) != (PATCH_SIZE, PATCH_SIZE):
        state["patch_embed.proj.weight"] = F.interpolate(
            kernel.float(), size=(PATCH_SIZE, PATCH_SIZE), mode="bicubic", align_corners=False
        ).to(kernel.dtype)
        log.info("%s: patch_embed kernel resized %s -> %s", path, tuple(kernel.shape[-2:]), (PATCH_SIZE, PATCH_SIZE))
    return state


def load_pretrained_vit_adapter(body: ViTAdapter, path):
    """Load a local checkpoint with TAO's key names into `body`: a TAO ViT-Adapter (backbone or
    detector checkpoint, prefixes stripped) or a plain NV-DINOv2 / timm ViT (its classifier keys
    dropped; the adapter layers it lacks keep their initial values and stay trainable when
    train_backbone is False, as in TAO). Layers of levels `body` does not return (`up`, `spm.fc1`,
    other `out_norm<i>`) are dropped. Anything else that does not fit raises ValueError naming the
    file and the keys. Returns the LoadReport (missing = kept initial values, unexpected = dropped).
    """
    own = set(body.state_dict())
    report = load_backbone_weights(
        body,
        path,
        layout="TAO ViT-Adapter / NV-DINOv2 ViT",
        ignorable=lambda k: k.startswith(CLASSIFIER_KEYS) or (k.startswith(ADAPTER_KEYS) and k not in own),
        may_be_missing=lambda k: k.startswith(ADAPTER_KEYS),
        adapt=lambda state: _adapt_vit_state(body, state, path),
    )
    body.keys_not_pretrained = [k for k, _ in body.named_parameters() if k in set(report.missing)]
    return report
