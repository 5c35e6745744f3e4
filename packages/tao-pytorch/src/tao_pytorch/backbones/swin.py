"""Swin Transformer trunk for OneFormer (`D2SwinTransformer`, Liu et al. 2021).

Contract (what the OneFormer model relies on):
    body = D2SwinTransformer(swin_cfg, freeze_at=0)      # swin_cfg: tao_core SwinConfig
    feats = body(images)                                  # images (B, 3, H, W), any H, W
    feats -> {"res2": (B, C, ceil(H/4), ceil(W/4)), "res3": stride 8, "res4": 16, "res5": 32}
             holding only the names in swin_cfg.out_features
    body.out_channels / body.strides: {feature name: channels / stride} of those features
    build_swin_backbone(backbone_cfg): the body of a tao_core BackboneConfig, with its
             `pretrained_weights` loaded and `freeze_at` applied.

The module tree and parameter names are those of SHI-Labs/OneFormer's D2SwinTransformer
(`patch_embed.proj`, `patch_embed.norm`, `absolute_pos_embed`, `layers.<i>.blocks.<j>.{norm1,
attn.qkv, attn.proj, attn.relative_position_bias_table, attn.relative_position_index, norm2,
mlp.fc1, mlp.fc2}`, `layers.<i>.downsample.{norm, reduction}`, output norms `norm<i>` for the
stages in out_indices), so their checkpoints (the `backbone.` part) load strictly.

Behaviour as in the reference:
- the image is padded right / bottom to a multiple of the patch size;
- every stage works on any map size: its map is padded right / bottom to a multiple of the
  window, attention runs per window (odd blocks on the map cyclically shifted by window // 2,
  with a mask that keeps regions which were not neighbours apart), then the padding is cut;
- patch merging pads odd maps by one row / column, so stage i+1 is ceil(size / 2);
- stage outputs (before merging) go through `norm<i>` and are returned channels-first.
"""

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as activation_checkpoint
from torch import nn

from tao_pytorch.backbones.vit_layers import DropPath, Mlp, relative_position_index
from tao_pytorch.backbones.weights import LoadReport, load_backbone_weights

FEATURE_NAMES = ("res2", "res3", "res4", "res5")
FEATURE_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
# The reference fills shifted-window attention between tokens of different regions with -100
# before the softmax (not -inf): exp(-100) is 0 in float32 and fp16 stays finite.
MASKED_LOGIT = -100.0


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C), H and W multiples of window -> (B * windows, window * window, C), row-major windows."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of window_partition: (B * windows, window * window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shifted_window_mask(hp: int, wp: int, window: int, shift: int, device=None) -> torch.Tensor:
    """(windows, window*window, window*window) additive mask for attention on a map of (hp, wp)
    (multiples of window) rolled up-left by `shift`: 0 between tokens of the same region of the
    unrolled map, MASKED_LOGIT between tokens that the roll brought together from different
    regions (3 bands per axis: up to the last window, the last window before the shift, the shift)."""
    # band of each row / column: 0 before the last window, 1 in it before the shift, 2 after
    def band(n):
        i = torch.arange(n, device=device)
        return (i >= n - window).float() + (i >= n - shift).float()

    region = (band(hp)[:, None] * 3 + band(wp)[None, :]).view(1, hp, wp, 1)
    labels = window_partition(region, window).squeeze(-1)  # (windows, window*window)
    diff = labels.unsqueeze(1) - labels.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, MASKED_LOGIT)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative-position bias."""

    def __init__(
        self,
        dim: int,
        window: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B * windows, N, C); mask (windows, N, N) additive, or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(bw, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(x))


class SwinTransformerBlock(nn.Module):
    """(Shifted) window attention and MLP, both pre-norm residual; channels-last (B, H, W, C)."""

    def __init__(self, dim, num_heads, window, shift, mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path):
        super().__init__()
        if not 0 <= shift < window:
            raise ValueError(f"shift ({shift}) must be in [0, window_size={window})")
        self.window_size, self.shift_size = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, shift_mask: Optional[torch.Tensor]) -> torch.Tensor:
        b, h, w, c = x.shape
        ws, shift = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x)
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))  # zeros after the norm, as the reference
        hp, wp = h + pad_b, w + pad_r
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        x = window_reverse(self.attn(window_partition(x, ws), shift_mask if shift > 0 else None), ws, hp, wp)
        if shift > 0:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        if pad_r or pad_b:
            x = x[:, :h, :w].contiguous()
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C): 2x2 neighbours concatenated, norm, linear."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # the reference's order: (even row, even col), (odd, even), (even, odd), (odd, odd)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One stage: `depth` blocks alternating plain / shifted windows, then (not last) a PatchMerging."""

    def __init__(self, dim, depth, num_heads, window, mlp_ratio, qkv_bias, qk_scale, drop, attn_drop,
                 drop_path: List[float], downsample: bool, use_checkpoint: bool):
        super().__init__()
        self.window_size = window
        self.shift_size = window // 2
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio,
                                 qkv_bias, qk_scale, drop, attn_drop, drop_path[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, downsample: bool = True):
        """Channels-last input -> (stage output, input of the next stage or None)."""
        h, w = x.shape[1:3]
        ws = self.window_size
        mask = None
        if len(self.blocks) > 1 and self.shift_size > 0:
            # padded size, with non-negative integer arithmetic only: the traced ONNX export turns
            # floor division of a negative size into truncation
            hp, wp = (h + ws - 1) // ws * ws, (w + ws - 1) // ws * ws
            mask = shifted_window_mask(hp, wp, ws, self.shift_size, x.device).to(x.dtype)
        for blk in self.blocks:
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                x = activation_checkpoint.checkpoint(blk, x, mask, use_reentrant=False)
            else:
                x = blk(x, mask)
        nxt = self.downsample(x) if downsample and self.downsample is not None else None
        return x, nxt


class PatchEmbed(nn.Module):
    """(B, 3, H, W) -> (B, C, ceil(H/p), ceil(W/p)): non-overlapping p x p patches, optional LayerNorm."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm: bool):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        h, w = x.shape[-2:]
        if h % p or w % p:
            x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.proj(x)
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x


def _check_config(cfg) -> None:
    p = "model.backbone.swin"
    stages = len(cfg.depths)
    if stages != 4:
        raise ValueError(f"{p}.depths: expected 4 stages (res2..res5), got {list(cfg.depths)}")
    if len(cfg.num_heads) != stages:
        raise ValueError(f"{p}.num_heads: expected one value per stage ({stages}), got {list(cfg.num_heads)}")
    for i, heads in enumerate(cfg.num_heads):
        if (cfg.embed_dim * 2**i) % heads:
            raise ValueError(
                f"{p}.num_heads[{i}]: {heads} does not divide the stage width {cfg.embed_dim * 2**i} (embed_dim * 2**{i})"
            )
    for name in cfg.out_features:
        if name not in FEATURE_NAMES:
            raise ValueError(f"{p}.out_features: unknown feature {name!r}; expected names from {list(FEATURE_NAMES)}")
        if FEATURE_NAMES.index(name) not in cfg.out_indices:
            raise ValueError(
                f"{p}.out_features: {name!r} needs stage {FEATURE_NAMES.index(name)} in {p}.out_indices "
                f"{list(cfg.out_indices)}"
            )
    if not cfg.out_features:
        raise ValueError(f"{p}.out_features: expected at least one of {list(FEATURE_NAMES)}")


class D2SwinTransformer(nn.Module):
    """Swin trunk returning {name: normalised stage output} for `cfg.out_features` (see module docstring).

    cfg: any object with SwinConfig's fields; freeze_at: 0 trains everything, N >= 1 freezes the
    stem (patch embedding, absolute position embedding) and the first N stages (their parameters
    get requires_grad=False and they stay in eval mode, so dropout / drop path are off there).
    """

    size_divisibility = 32

    def __init__(self, cfg, freeze_at: int = 0):
        super().__init__()
        _check_config(cfg)
        if not 0 <= freeze_at <= len(cfg.depths):
            raise ValueError(f"model.backbone.freeze_at: expected 0..{len(cfg.depths)}, got {freeze_at}")
        depths, dim = list(cfg.depths), cfg.embed_dim
        self.num_layers = len(depths)
        self.ape = cfg.ape
        self.out_indices = sorted(cfg.out_indices)
        self.num_features = [dim * 2**i for i in range(self.num_layers)]
        self._out_features = [n for n in FEATURE_NAMES if n in cfg.out_features]
        self.out_channels: Dict[str, int] = {n: self.num_features[FEATURE_NAMES.index(n)] for n in self._out_features}
        self.strides: Dict[str, int] = {n: FEATURE_STRIDES[n] for n in self._out_features}
        self.freeze_at = freeze_at

        self.patch_embed = PatchEmbed(cfg.patch_size, 3, dim, cfg.patch_norm)
        if self.ape:
            grid = cfg.pretrain_img_size // cfg.patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, dim, grid, grid))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(p=cfg.drop_rate)
        # stochastic depth rising linearly over all blocks (torch.linspace: the reference's values)
        dpr = torch.linspace(0, cfg.drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList(
            BasicLayer(
                self.num_features[i], depths[i], cfg.num_heads[i], cfg.window_size, cfg.mlp_ratio, cfg.qkv_bias,
                cfg.qk_scale, cfg.drop_rate, cfg.attn_drop_rate, dpr[sum(depths[:i]): sum(depths[: i + 1])],
                downsample=i < self.num_layers - 1, use_checkpoint=cfg.use_checkpoint,
            )
            for i in range(self.num_layers)
        )
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))
        self._freeze()

    def _frozen_modules(self) -> List[nn.Module]:
        if self.freeze_at == 0:
            return []
        return [self.patch_embed, self.pos_drop] + list(self.layers[: self.freeze_at])

    def _freeze(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        if self.freeze_at and self.ape:
            self.absolute_pos_embed.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self._frozen_modules():
            m.eval()
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"D2SwinTransformer takes images of shape (B, C, H, W), got {tuple(x.shape)}")
        x = self.patch_embed(x)
        if self.ape:
            x = x + F.interpolate(self.absolute_pos_embed, size=x.shape[-2:], mode="bicubic")
        x = self.pos_drop(x.permute(0, 2, 3, 1))  # channels-last from here on
        wanted = [FEATURE_NAMES.index(n) for n in self._out_features]
        last = max(wanted)  # later stages are not needed
        outs = {}
        for i in range(last + 1):
            out, x = self.layers[i](x, downsample=i < last)
            if i in wanted:
                outs[FEATURE_NAMES[i]] = getattr(self, f"norm{i}")(out).permute(0, 3, 1, 2).contiguous()
        return outs

    def output_shape(self) -> Dict[str, Dict[str, int]]:
        """{name: {"channels": C, "stride": s}} of the returned features (detectron2's ShapeSpec as a dict)."""
        return {n: {"channels": self.out_channels[n], "stride": self.strides[n]} for n in self._out_features}


# Keys a Swin checkpoint may carry that the trunk has no use for: the classifier head and its
# final norm, the shifted-window masks that classification checkpoints store as buffers, and the
# other parts of a full OneFormer model.
_IGNORABLE_PREFIXES = ("head.", "norm.", "sem_seg_head.", "criterion.", "text_encoder.", "text_projector.",
                       "prompt_ctx.", "task_mlp.")


def load_pretrained_swin(body: D2SwinTransformer, path) -> LoadReport:
    """Load a local Swin state dict (SHI-Labs / Microsoft key names, optionally under `backbone.`).

    The output norms `norm<i>` that a classification checkpoint lacks keep their initial values;
    its `head.*` / `norm.*` / `attn_mask` entries are dropped. Anything else missing, unexpected or
    misshapen raises ValueError naming the file and the keys, before any weight is copied.
    """
    out_norms = tuple(f"norm{i}." for i in range(4))
    return load_backbone_weights(
        body,
        path,
        layout="SHI-Labs OneFormer D2SwinTransformer",
        ignorable=lambda k: k.startswith(_IGNORABLE_PREFIXES) or k.endswith(".attn_mask"),
        # the relative-position index is a fixed function of the window: a file may omit it
        may_be_missing=lambda k: k.startswith(out_norms) or k.endswith(".relative_position_index"),
    )


def build_swin_backbone(backbone_cfg) -> D2SwinTransformer:
    """The Swin body of a tao_core OneFormer BackboneConfig: built from `swin`, `pretrained_weights`
    loaded from a local file when set, then `freeze_at` applied."""
    kind = backbone_cfg.type or backbone_cfg.name
    if kind != "D2SwinTransformer":
        raise NotImplementedError(
            f"model.backbone: {kind!r} is not yet available in tao-pytorch; available: D2SwinTransformer"
        )
    body = D2SwinTransformer(backbone_cfg.swin, freeze_at=0)
    if backbone_cfg.pretrained_weights:
        load_pretrained_swin(body, backbone_cfg.pretrained_weights)
    body.freeze_at = backbone_cfg.freeze_at
    if not 0 <= body.freeze_at <= body.num_layers:
        raise ValueError(f"model.backbone.freeze_at: expected 0..{body.num_layers}, got {body.freeze_at}")
    body._freeze()
    return body
