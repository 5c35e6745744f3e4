"""GCViT (Global Context Vision Transformer, Hatamizadeh et al. 2022) trunks for DETR detectors.

The module tree and parameter names are those of TAO's detection GCViT
(`patch_embed.*`, `levels.<i>.blocks.<j>.attn.qkv.weight`, `levels.<i>.q_global_gen.to_q_global.*`,
`levels.<i>.downsample.*`, one output LayerNorm `norm<i>` per returned stage), so TAO's GCViT
detection checkpoints and NVlabs' ImageNet checkpoints load as is (the classifier's `norm` /
`head` are dropped; the output norms of a classifier checkpoint keep their initial values).

Architecture (TAO's detection variant, resolution 224 for the global-query generators):
- stem: 3x3 stride-2 conv, then a ReduceSize (fused MBConv + stride-2 conv) keeping the width:
  stride 4 with `dim` channels;
- 4 stages of widths dim * (1, 2, 4, 8), strides 4..32, windows (7, 7, 14, 7); blocks alternate
  local window attention (even) and global-query attention (odd), whose queries are made per
  image by the stage's GlobalQueryGen (MBConv + max-pool repeated until the 224-input map would
  be one window, then resized bicubically to the window size, so any input size works);
- feature maps are padded on the right / bottom to a multiple of the window (as TAO's detection
  block does) and cropped back; ReduceSize between stages;
- stage outputs (before the downsampling) go through `norm<i>` and are returned channels-first.
Stages are numbered 0..3 as in `return_interm_indices`.
"""

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.backbones.levels import check_return_indices
from tao_pytorch.backbones.vit_layers import DropPath, Mlp, relative_position_index
from tao_pytorch.backbones.weights import load_backbone_weights

# TAO's gc_vit_model_dict (detection): depths, heads, base width, MLP ratio, layer scale.
GCVIT_SPECS = {
    "gc_vit_xxtiny": dict(depths=(2, 2, 6, 2), num_heads=(2, 4, 8, 16), dim=64, mlp_ratio=3.0, layer_scale=None),
    "gc_vit_xtiny": dict(depths=(3, 4, 6, 5), num_heads=(2, 4, 8, 16), dim=64, mlp_ratio=3.0, layer_scale=None),
    "gc_vit_tiny": dict(depths=(3, 4, 19, 5), num_heads=(2, 4, 8, 16), dim=64, mlp_ratio=3.0, layer_scale=None),
    "gc_vit_small": dict(depths=(3, 4, 19, 5), num_heads=(3, 6, 12, 24), dim=96, mlp_ratio=2.0, layer_scale=1e-5),
    "gc_vit_base": dict(depths=(3, 4, 19, 5), num_heads=(4, 8, 16, 32), dim=128, mlp_ratio=2.0, layer_scale=1e-5),
    "gc_vit_large": dict(depths=(3, 4, 19, 5), num_heads=(6, 12, 24, 48), dim=192, mlp_ratio=2.0, layer_scale=1e-5),
}
WINDOW_SIZES = (7, 7, 14, 7)
# Resolution the global-query generators are laid out for (TAO's default, also its pretraining size).
QUERY_RESOLUTION = 224
DROP_PATH_RATE = 0.2


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


class SqueezeExcitation(nn.Module):
    def __init__(self, dim: int, expansion: float = 0.25):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        hidden = int(dim * expansion)
        self.fc = nn.Sequential(
            nn.Linear(dim, hidden, bias=False), nn.GELU(), nn.Linear(hidden, dim, bias=False), nn.Sigmoid()
        )

    def forward(self, x):
        b, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)


def _fused_mbconv(dim: int) -> nn.Sequential:
    """Depthwise 3x3 -> GELU -> squeeze-excitation -> 1x1 (used as a residual branch)."""
    return nn.Sequential(
        nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False),
        nn.GELU(),
        SqueezeExcitation(dim),
        nn.Conv2d(dim, dim, 1, 1, 0, bias=False),
    )


class ReduceSize(nn.Module):
    """Channels-last (B, H, W, C) -> (B, H/2, W/2, C or 2C): norm, MBConv residual, stride-2 conv, norm."""

    def __init__(self, dim: int, keep_dim: bool = False):
        super().__init__()
        dim_out = dim if keep_dim else 2 * dim
        self.norm1 = nn.LayerNorm(dim)
        self.conv = _fused_mbconv(dim)
        self.reduction = nn.Conv2d(dim, dim_out, 3, 2, 1, bias=False)
        self.norm2 = nn.LayerNorm(dim_out)

    def forward(self, x):
        x = _channels_first(self.norm1(x.contiguous()))
        x = self.reduction(x + self.conv(x))
        return self.norm2(_channels_last(x))


class PatchEmbed(nn.Module):
    """(B, 3, H, W) -> (B, H/4, W/4, dim) channels-last."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, 3, 2, 1)
        self.conv_down = ReduceSize(dim, keep_dim=True)

    def forward(self, x):
        return self.conv_down(_channels_last(self.proj(x)))


class FeatExtract(nn.Module):
    """Channels-first MBConv residual, then a stride-2 max-pool unless keep_dim."""

    def __init__(self, dim: int, keep_dim: bool = False):
        super().__init__()
        self.conv = _fused_mbconv(dim)
        self.keep_dim = keep_dim
        if not keep_dim:
            self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x):
        x = x.contiguous()
        x = x + self.conv(x)
        return x if self.keep_dim else self.pool(x)


def _query_reductions(stage: int, window: int) -> int:
    """Halvings that take stage `stage`'s map at QUERY_RESOLUTION down to one window (0: none)."""
    size = QUERY_RESOLUTION // 2 ** (stage + 2)
    n = 0
    while size > window:
        size //= 2
        n += 1
    return n


class GlobalQueryGen(nn.Module):
    """Per-image global queries (B, 1, heads, window*window, head_dim) from a stage's input map."""

    def __init__(self, dim: int, stage: int, window: int, num_heads: int):
        super().__init__()
        n = _query_reductions(stage, window)
        extractors = [FeatExtract(dim, keep_dim=False) for _ in range(n)] or [FeatExtract(dim, keep_dim=True)]
        self.to_q_global = nn.Sequential(*extractors)
        self.window_size = window
        self.num_heads = num_heads
        self.dim_head = dim // num_heads

    def forward(self, x):
        x = self.to_q_global(x)
        b, _, h, w = x.shape
        if h != self.window_size or w != self.window_size:
            # inputs other than 224 give other map sizes: the queries are resized to one window
            x = F.interpolate(x, size=(self.window_size, self.window_size), mode="bicubic")
        x = _channels_last(x).reshape(b, 1, self.window_size**2, self.num_heads, self.dim_head)
        return x.permute(0, 1, 3, 2, 4)


class WindowAttention(nn.Module):
    """Multi-head attention inside each window with a learned relative-position bias.

    global_query=False: queries, keys and values from the window (`qkv` makes 3 * dim);
    global_query=True: keys and values from the window (`qkv` makes 2 * dim), queries are the
    image's global queries, shared by all its windows.
    """

    def __init__(self, dim: int, num_heads: int, window: int, global_query: bool, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window
        self.global_query = global_query
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * (2 if global_query else 3))
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, q_global: torch.Tensor) -> torch.Tensor:
        bw, n, c = x.shape  # bw = batch * windows
        head_dim = c // self.num_heads
        parts = self.qkv(x).reshape(bw, n, -1, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        if self.global_query:
            k, v = parts[0], parts[1]
            b = q_global.shape[0]
            q = q_global.expand(b, bw // b, -1, -1, -1).reshape(bw, self.num_heads, n, head_dim)
        else:
            q, k, v = parts[0], parts[1], parts[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = (attn + bias.permute(2, 0, 1).unsqueeze(0)).softmax(dim=-1)
        x = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(x))


class GCViTBlock(nn.Module):
    def __init__(self, dim, num_heads, window, global_query, mlp_ratio, drop_path, layer_scale):
        super().__init__()
        self.window_size = window
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window, global_query)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale)))
            self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale)))
        else:
            self.gamma1 = self.gamma2 = 1.0

    def forward(self, x: torch.Tensor, q_global: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        shortcut = x
        x = self.norm1(x)
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))  # zeros right / bottom, as TAO's detection block
        hp, wp = h + pad_b, w + pad_r
        nh, nw = hp // ws, wp // ws
        windows = x.view(b, nh, ws, nw, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        x = self.attn(windows, q_global)
        x = x.view(b, nh, nw, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if pad_r or pad_b:
            x = x[:, :h, :w].contiguous()
        x = shortcut + self.drop_path(self.gamma1 * x)
        return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))


class GCViTLayer(nn.Module):
    """One stage: global queries from its input, blocks alternating local / global attention,
    then (all stages but the last) a ReduceSize to the next stage."""

    def __init__(self, dim, depth, stage, num_heads, window, mlp_ratio, drop_path: List[float], layer_scale, downsample):
        super().__init__()
        self.blocks = nn.ModuleList(
            GCViTBlock(dim, num_heads, window, i % 2 == 1, mlp_ratio, drop_path[i], layer_scale) for i in range(depth)
        )
        self.downsample = ReduceSize(dim) if downsample else None
        self.q_global_gen = GlobalQueryGen(dim, stage, window, num_heads)

    def forward(self, x: torch.Tensor, downsample: bool = True):
        """Channels-last input -> (stage output, input of the next stage or None)."""
        q_global = self.q_global_gen(_channels_first(x))
        for blk in self.blocks:
            x = blk(x, q_global)
        nxt = self.downsample(x) if downsample and self.downsample is not None else None
        return x, nxt


class GCViT(nn.Module):
    """GCViT trunk returning the normalised outputs of the stages in `return_indices` (0..3)."""

    def __init__(self, name: str, return_indices: Sequence[int] = (1, 2, 3), drop_path_rate: float = DROP_PATH_RATE):
        super().__init__()
        if name not in GCVIT_SPECS:
            raise ValueError(f"unknown GCViT {name!r}; choose one of {sorted(GCVIT_SPECS)}")
        spec = GCVIT_SPECS[name]
        depths, dim = spec["depths"], spec["dim"]
        self.name = name
        self.return_indices = check_return_indices(return_indices)
        self.stage_channels = [dim * 2**i for i in range(4)]
        self.stage_strides = [4, 8, 16, 32]
        self.num_channels = [self.stage_channels[i] for i in self.return_indices]
        self.strides = [self.stage_strides[i] for i in self.return_indices]
        self.patch_embed = PatchEmbed(3, dim)
        n = sum(depths)  # stochastic depth rising linearly from 0 to drop_path_rate (in Python: meta-device safe)
        dpr = [drop_path_rate * i / (n - 1) for i in range(n)]
        self.levels = nn.ModuleList(
            GCViTLayer(
                self.stage_channels[i],
                depths[i],
                i,
                spec["num_heads"][i],
                WINDOW_SIZES[i],
                spec["mlp_ratio"],
                dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                spec["layer_scale"],
                downsample=i < 3,
            )
            for i in range(4)
        )
        for i in self.return_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.stage_channels[i]))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.patch_embed(x)
        last = self.return_indices[-1]
        outs = []
        for i in range(last + 1):  # later stages are not needed
            out, x = self.levels[i](x, downsample=i < last)
            if i in self.return_indices:
                outs.append(_channels_first(getattr(self, f"norm{i}")(out)).contiguous())
        return outs

    def checkpoint_units(self) -> List[nn.Module]:
        """The modules worth recomputing in the backward pass (activation checkpointing): the stages that run."""
        return list(self.levels[: self.return_indices[-1] + 1])

    def freeze(self, train_backbone: bool) -> None:
        """train_backbone=False freezes everything; True trains all (TAO freezes no GCViT stage).

        Stages after the last returned one, and that stage's downsampling, never run, so they
        are frozen too (no unused parameters for DDP to complain about).
        """
        last = self.return_indices[-1]
        unused = tuple(f"levels.{i}." for i in range(last + 1, 4)) + (f"levels.{last}.downsample.",)
        for pname, p in self.named_parameters():
            if not train_backbone or pname.startswith(unused):
                p.requires_grad_(False)


def load_pretrained_gc_vit(body: GCViT, path):
    """Load a local GCViT state dict with TAO's / NVlabs' key names into `body`.

    A classifier checkpoint's `norm.*` / `head.*` are dropped and the output norms `norm<i>` it
    lacks keep their initial values (TAO loads the same files with strict=False); any other
    missing, unexpected or misshapen key raises ValueError naming the file and the keys.
    Returns the LoadReport (missing = kept initial values, unexpected = dropped).
    """
    out_norms = tuple(f"norm{i}." for i in range(4))
    return load_backbone_weights(
        body,
        path,
        layout="TAO GCViT",
        ignorable=lambda k: k.startswith(("head.", "norm.")) or k.startswith(out_norms),
        may_be_missing=lambda k: k.startswith(out_norms),
    )
