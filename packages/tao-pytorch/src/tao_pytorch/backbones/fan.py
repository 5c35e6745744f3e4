"""FAN (Fully Attentional Networks, Zhou et al. 2022) hybrid trunks for DETR detectors.

The module tree and parameter names are those of TAO's DINO FAN backbone
(`patch_embed.backbone.stages.<i>.blocks.<j>.conv_dw.weight`, `blocks.<i>.attn.kv.weight`,
`blocks.<i>.mlp.mlp_v.dwconv.bn.running_mean`, `cls_attn_blocks.<i>.attn.q.weight`,
`learnable_downsample.weight`, one output LayerNorm `out_norm<i>` per returned level), so TAO's
FAN detection checkpoints load strictly, and NVlabs' / TAO's ImageNet FAN-Hybrid checkpoints load
with their classifier (`norm`, `head`) dropped and the detection-only layers left at their
initial values.

Architecture (TAO's `fan_{tiny,small,base,large}` = FAN-{T,S,B,L}-Hybrid):
- a ConvNeXt stem (4x4 stride-4 conv + channels-first LayerNorm) and two ConvNeXt stages of width
  128 (stride 4) and 256 (stride 8, after a LayerNorm + 2x2 stride-2 conv);
- a 2x2 stride-2 conv to `embed_dim` tokens (stride 16) plus a Fourier position encoding;
- FAN blocks: token-mixing self-attention, then channel processing (a sigmoid attention over
  channels, computed from the softmax-normalised tokens, that rescales an MLP of the tokens;
  the MLP carries a depthwise-conv branch with BatchNorm);
- two class-attention blocks over [cls token, tokens] (they also renormalise the tokens), then a
  3x3 stride-2 conv to 768 channels (stride 32).
Levels 0..3 (`return_interm_indices`) are: stage-0 map (128), stage-1 map (256), the tokens after
block `out_block` (embed_dim; the last block except for fan_large, as in TAO), and the stride-32
map (768), each through its `out_norm<i>`.
"""

import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.backbones.levels import check_return_indices
from tao_pytorch.backbones.vit_layers import DropPath, Mlp
from tao_pytorch.backbones.weights import load_backbone_weights

# TAO's fan_model_dict (DINO): ConvNeXt stage depths, FAN blocks, token width, heads, and the block
# whose output is level 2.
FAN_SPECS = {
    "fan_tiny": dict(conv_depths=(3, 3), depth=8, embed_dim=192, num_heads=8, out_block=7),
    "fan_small": dict(conv_depths=(3, 3), depth=10, embed_dim=384, num_heads=8, out_block=9),
    "fan_base": dict(conv_depths=(3, 3), depth=16, embed_dim=448, num_heads=8, out_block=15),
    "fan_large": dict(conv_depths=(3, 5), depth=22, embed_dim=480, num_heads=10, out_block=18),
}
CONV_DIMS = (128, 256)
LAST_LEVEL_DIM = 768
MLP_RATIO = 4.0
CLS_ATTN_LAYERS = 2
DROP_PATH_RATE = 0.3  # TAO gives every FAN block the same rate (no linear ramp)
CONVNEXT_LAYER_SCALE = 1e-6
EPS = 1e-6  # LayerNorm eps of the ConvNeXt part, the FAN blocks and the class-attention blocks


def _trunc_normal(m: nn.Module) -> None:
    nn.init.trunc_normal_(m.weight, std=0.02)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map.

    unbiased=True divides the variance by C - 1, as TAO's numbers do for every ConvNeXt norm after
    the stem: its LayerNorm2d switches to an unbiased variance when the input is not contiguous,
    and from the stem's norm on (which returns a permuted view, a layout the convolutions keep)
    none is. Computed as a standard layer norm with rescaled eps and weight (same value).
    """

    def __init__(self, dim: int, unbiased: bool = True):
        super().__init__(dim, eps=EPS)
        self.unbiased = unbiased

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        if not self.unbiased:
            y = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        else:
            c = self.normalized_shape[0]
            # (x - mean) / sqrt(var * c / (c - 1) + eps) = k * (x - mean) / sqrt(var + eps / k^2), k^2 = (c - 1) / c
            k2 = (c - 1) / c
            y = F.layer_norm(x, self.normalized_shape, self.weight * math.sqrt(k2), self.bias, self.eps * k2)
        return y.permute(0, 3, 1, 2)


class ConvMlp(nn.Module):
    """1x1 conv -> GELU -> 1x1 conv on a (B, C, H, W) map."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv -> LayerNorm -> MLP, scaled by `gamma`, plus the input."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.mlp = ConvMlp(dim, 4 * dim)
        self.gamma = nn.Parameter(torch.full((dim,), CONVNEXT_LAYER_SCALE))

    def forward(self, x):
        y = self.mlp(self.norm(self.conv_dw(x)))
        return x + y * self.gamma.view(1, -1, 1, 1)


class ConvNeXtStage(nn.Module):
    def __init__(self, cin: int, cout: int, depth: int, downsample: bool):
        super().__init__()
        # stage 0 keeps the stem's width and resolution: no downsample module (and no keys)
        self.downsample = nn.Sequential(LayerNorm2d(cin), nn.Conv2d(cin, cout, 2, stride=2)) if downsample else None
        self.blocks = nn.Sequential(*(ConvNeXtBlock(cout) for _ in range(depth)))

    def forward(self, x):
        if self.downsample is not None:
            x = self.downsample(x)
        return self.blocks(x)


class ConvNeXtStem(nn.Module):
    """Stem + the ConvNeXt stages; returns every stage's map."""

    def __init__(self, depths: Sequence[int]):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, CONV_DIMS[0], 4, stride=4), LayerNorm2d(CONV_DIMS[0], unbiased=False))
        self.stages = nn.Sequential(
            *(ConvNeXtStage(CONV_DIMS[max(i - 1, 0)], CONV_DIMS[i], d, downsample=i > 0) for i, d in enumerate(depths))
        )

    def forward(self, x, num_stages: int) -> List[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for stage in list(self.stages)[:num_stages]:
            x = stage(x)
            outs.append(x)
        return outs


class HybridEmbed(nn.Module):
    """ConvNeXt stages, then a 2x2 stride-2 conv from the stride-8 map to tokens (stride 16)."""

    def __init__(self, conv_depths: Sequence[int], embed_dim: int):
        super().__init__()
        self.backbone = ConvNeXtStem(conv_depths)
        self.proj = nn.Conv2d(CONV_DIMS[-1], embed_dim, 2, stride=2)


class FourierPositionEncoding(nn.Module):
    """Sine / cosine features of the normalised (y, x) token positions, projected to the token width."""

    def __init__(self, dim: int, hidden: int = 32, temperature: float = 10000.0):
        super().__init__()
        self.token_projection = nn.Conv2d(2 * hidden, dim, 1)
        self.hidden = hidden
        self.temperature = temperature

    def forward(self, h: int, w: int) -> torch.Tensor:
        """(1, h*w, dim), computed in float32 as TAO does."""
        device = self.token_projection.weight.device
        scale = 2 * math.pi
        y = torch.arange(1, h + 1, dtype=torch.float32, device=device) / (h + 1e-6) * scale
        x = torch.arange(1, w + 1, dtype=torch.float32, device=device) / (w + 1e-6) * scale
        j = torch.arange(self.hidden, dtype=torch.float32, device=device)
        freq = self.temperature ** (2 * torch.div(j, 2, rounding_mode="floor") / self.hidden)

        def embed(t):  # (n,) -> (n, hidden): sin on even channels, cos on odd ones
            a = t[:, None] / freq
            return torch.stack([a[:, 0::2].sin(), a[:, 1::2].cos()], dim=2).flatten(1)

        ey = embed(y)[:, None, :].expand(h, w, self.hidden)
        ex = embed(x)[None, :, :].expand(h, w, self.hidden)
        pos = torch.cat([ey, ex], dim=2).permute(2, 0, 1)[None]  # (1, 2*hidden, h, w)
        return self.token_projection(pos.to(self.token_projection.weight.dtype)).flatten(2).transpose(1, 2)


class TokenMixing(nn.Module):
    """Multi-head self-attention over the tokens (`q` and `kv` projections, as TAO names them)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, -1).transpose(1, 2)
        k, v = self.kv(x).reshape(b, n, 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    """Depthwise 3x3 -> GELU -> BatchNorm -> depthwise 3x3 on tokens laid out as an h x w map."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.act = nn.GELU()
        self.bn = nn.BatchNorm2d(dim)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x, h: int, w: int):
        b, n, c = x.shape
        x = x.transpose(1, 2).reshape(b, c, h, w)
        x = self.conv2(self.bn(self.act(self.conv1(x))))
        return x.reshape(b, c, n).transpose(1, 2)


class ConvBranchMlp(nn.Module):
    """fc1 -> (+ gamma * depthwise-conv branch) -> fc2; its only non-linearity is inside DWConv."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.gamma = nn.Parameter(torch.ones(hidden))
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, h: int, w: int):
        x = self.fc1(x)
        return self.fc2(self.gamma * self.dwconv(x, h, w) + x)


class ChannelProcessing(nn.Module):
    """FAN's channel attention: per head, channel weights sigmoid(softmax_N(q)^T . mean_c softmax_N(x))
    times `temperature` rescale a normalised MLP of the tokens."""

    def __init__(self, dim: int, num_heads: int, hidden: int):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.mlp_v = ConvBranchMlp(dim, hidden)
        self.norm_v = nn.LayerNorm(dim)  # default eps: TAO builds this norm without its eps
        self.q = nn.Linear(dim, dim)

    def forward(self, x, h: int, w: int):
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, -1).permute(0, 2, 3, 1)  # (b, heads, c/heads, n)
        k = x.reshape(b, n, heads, -1).transpose(1, 2)  # (b, heads, n, c/heads)
        # softmax over the tokens; the key is averaged over each head's channels
        attn = q.softmax(-1) @ k.softmax(-2).mean(-1, keepdim=True)  # (b, heads, c/heads, 1)
        attn = torch.sigmoid(attn) * self.temperature
        v = self.norm_v(self.mlp_v(x, h, w)).reshape(b, n, heads, -1).permute(0, 2, 3, 1)
        return (attn * v).permute(0, 3, 1, 2).reshape(b, n, c)


class FANBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=EPS)
        self.attn = TokenMixing(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=EPS)
        self.mlp = ChannelProcessing(dim, num_heads, int(dim * MLP_RATIO))
        self.gamma1 = nn.Parameter(torch.ones(dim))
        self.gamma2 = nn.Parameter(torch.ones(dim))

    def forward(self, x, h: int, w: int):
        x = x + self.drop_path(self.gamma1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x), h, w))


class ClassAttention(nn.Module):
    """The cls token (first) attends to all tokens; returns its update (B, 1, C)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q = self.q(x[:, :1]).reshape(b, 1, self.num_heads, -1).transpose(1, 2)
        k = self.k(x).reshape(b, n, self.num_heads, -1).transpose(1, 2)
        v = self.v(x).reshape(b, n, self.num_heads, -1).transpose(1, 2)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, 1, c))


class ClassAttentionBlock(nn.Module):
    """CaiT-style class attention with TAO's token normalisation: every token goes through norm2,
    only the cls token through the MLP; the residual then adds the (normalised) tokens to themselves."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=EPS)
        self.attn = ClassAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim, int(dim * MLP_RATIO))
        self.gamma1 = nn.Parameter(torch.ones(dim))
        self.gamma2 = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        y = self.norm1(x)
        x = self.norm2(x + self.gamma1 * torch.cat([self.attn(y), y[:, 1:]], dim=1))
        cls = self.gamma2 * self.mlp(x[:, :1])
        return x + torch.cat([cls, x[:, 1:]], dim=1)


class FAN(nn.Module):
    """FAN-Hybrid trunk returning the normalised levels in `return_indices` (0..3, strides 4..32)."""

    def __init__(self, name: str, return_indices: Sequence[int] = (1, 2, 3), drop_path_rate: float = DROP_PATH_RATE):
        super().__init__()
        if name not in FAN_SPECS:
            raise ValueError(f"unknown FAN {name!r}; choose one of {sorted(FAN_SPECS)}")
        spec = FAN_SPECS[name]
        dim, heads = spec["embed_dim"], spec["num_heads"]
        self.name = name
        self.out_block = spec["out_block"]
        self.return_indices = check_return_indices(return_indices)
        self.stage_channels = [CONV_DIMS[0], CONV_DIMS[1], dim, LAST_LEVEL_DIM]
        self.stage_strides = [4, 8, 16, 32]
        self.num_channels = [self.stage_channels[i] for i in self.return_indices]
        self.strides = [self.stage_strides[i] for i in self.return_indices]

        self.patch_embed = HybridEmbed(spec["conv_depths"], dim)
        self.pos_embed = FourierPositionEncoding(dim)
        self.blocks = nn.ModuleList(FANBlock(dim, heads, drop_path_rate) for _ in range(spec["depth"]))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_attn_blocks = nn.ModuleList(ClassAttentionBlock(dim, heads) for _ in range(CLS_ATTN_LAYERS))
        for i in self.return_indices:
            self.add_module(f"out_norm{i}", nn.LayerNorm(self.stage_channels[i]))
        self.learnable_downsample = nn.Conv2d(dim, LAST_LEVEL_DIM, 3, stride=2, padding=1)
        self._init_weights()

    def _init_weights(self):
        # TAO's initialisation: truncated normal (std 0.02) for linear layers and the ConvNeXt
        # convs, He-normal on fan-out for the depthwise convs of the channel MLP, the other
        # convs at PyTorch's default.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _trunc_normal(m)
        for m in self.patch_embed.backbone.modules():
            if isinstance(m, nn.Conv2d):
                _trunc_normal(m)
        for m in self.blocks.modules():
            if isinstance(m, DWConv) and not m.conv1.weight.is_meta:  # normal_ is slow on the meta device
                for conv in (m.conv1, m.conv2):
                    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / 9))
                    nn.init.zeros_(conv.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _levels_run(self) -> int:
        """How far the forward pass must go: 0/1 = ConvNeXt stages only, 2 = FAN blocks up to
        out_block, 3 = everything."""
        return self.return_indices[-1]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        last = self._levels_run()
        levels = self.patch_embed.backbone(x, num_stages=min(last + 1, 2))
        if last >= 2:
            x = self.patch_embed.proj(levels[-1])
            b, _, h, w = x.shape
            x = x.flatten(2).transpose(1, 2) + self.pos_embed(h, w)
            blocks = self.blocks if last == 3 else self.blocks[: self.out_block + 1]
            for i, blk in enumerate(blocks):
                x = blk(x, h, w)
                if i == self.out_block:
                    levels.append(x.transpose(1, 2).reshape(b, -1, h, w))
            if last == 3:
                x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
                for blk in self.cls_attn_blocks:
                    x = blk(x)
                levels.append(self.learnable_downsample(x[:, 1:].transpose(1, 2).reshape(b, -1, h, w)))
        outs = []
        for i in self.return_indices:
            norm = getattr(self, f"out_norm{i}")
            outs.append(norm(levels[i].permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous())
        return outs

    def checkpoint_units(self) -> List[nn.Module]:
        """The modules recomputed in the backward pass under activation checkpointing: the FAN blocks
        that run (what TAO checkpoints) and the ConvNeXt stages (the largest maps, at strides 4 / 8)."""
        last = self._levels_run()
        units = list(self.patch_embed.backbone.stages[: min(last + 1, 2)])
        if last == 3:
            units += list(self.blocks)
        elif last == 2:
            units += list(self.blocks[: self.out_block + 1])
        return units

    def _unused_prefixes(self) -> tuple:
        last = self._levels_run()
        unused = []
        if last < 3:
            unused += ["cls_token", "cls_attn_blocks.", "learnable_downsample."]
            unused += [f"blocks.{i}." for i in range(self.out_block + 1, len(self.blocks))]
        if last < 2:
            unused += ["patch_embed.proj.", "pos_embed.", "blocks."]
        if last < 1:
            unused += ["patch_embed.backbone.stages.1."]
        return tuple(unused)

    def freeze(self, train_backbone: bool) -> None:
        """train_backbone=False freezes everything (and keeps the BatchNorm statistics fixed, see
        `train`); True trains all (TAO freezes no FAN stage). Layers that never run for the
        requested levels are frozen too (no unused parameters for DDP to complain about)."""
        self.frozen = not train_backbone
        unused = self._unused_prefixes()
        for pname, p in self.named_parameters():
            if not train_backbone or pname.startswith(unused):
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        # A frozen trunk must not move its BatchNorm running statistics in training mode either.
        super().train(mode)
        if getattr(self, "frozen", False):
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self


def load_pretrained_fan(body: FAN, path):
    """Load a local FAN state dict with TAO's key names into `body`.

    A classifier checkpoint's `norm.*` / `head.*` are dropped; the detection-only layers it lacks
    (`out_norm<i>`, `learnable_downsample`) keep their initial values (TAO loads the same files with
    strict=False). Output norms of levels `body` does not return are dropped. Any other missing,
    unexpected or misshapen key raises ValueError naming the file and the keys.
    Returns the LoadReport (missing = kept initial values, unexpected = dropped).
    """
    detection_only = tuple(f"out_norm{i}." for i in range(4)) + ("learnable_downsample.",)
    return load_backbone_weights(
        body,
        path,
        layout="TAO FAN",
        ignorable=lambda k: k.startswith(("head.", "norm.")) or k.startswith(detection_only),
        may_be_missing=lambda k: k.startswith(detection_only),
    )
