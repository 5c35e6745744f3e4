"""The plain Vision Transformer parts of the ViT-Adapter trunk (`vit_adapter.py`).

Parameter names are those timm's VisionTransformer gives (`patch_embed.proj.*`,
`blocks.<i>.norm1.*`, `blocks.<i>.attn.qkv.*`, `blocks.<i>.attn.proj.*`, `blocks.<i>.ls1.gamma`,
`blocks.<i>.mlp.fc1.*`, `blocks.<i>.mlp.fc2.*`, `blocks.<i>.ls2.gamma`), which is what TAO's
ViT-Adapter subclasses and what NV-DINOv2 checkpoints hold, so both load by name.

NV-DINOv2's MLP is a SwiGLU packed into one input layer: `fc1` makes 2 * h features, the first
half goes through SiLU and gates the second, `fc2` maps the h products back (timm's GluMlp with
the gate first). ViT-L/16 has h = 2736 (fc1 1024 -> 5472).
"""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.backbones.vit_layers import DropPath, Mlp

LN_EPS = 1e-6  # every LayerNorm of the trunk and the adapter (TAO / timm ViT setting)


def drop_path_rates(rate: float, depth: int) -> List[float]:
    """Stochastic depth rising linearly from 0 (first block) to `rate` (last), as timm lays it out.
    Plain Python, so building on the meta device needs no tensor maths."""
    if depth == 1:
        return [0.0]
    return [rate * i / (depth - 1) for i in range(depth)]


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch (`gamma`)."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x):
        return x * self.gamma


class SwiGLU(nn.Module):
    """fc1 -> split in two halves (a, b) -> silu(a) * b -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        if hidden % 2:
            raise ValueError(f"SwiGLU hidden width must be even (fc1 makes gate and value halves), got {hidden}")
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x):
        a, b = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(self.act(a) * b)


class Attention(nn.Module):
    """Global multi-head self-attention over the tokens (fused qkv projection)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        # scaled_dot_product_attention picks a memory-efficient kernel (4096 tokens at 1024x1024)
        # and exports to ONNX as plain MatMul / Softmax.
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale: x + ls1(attn(norm1 x)), then x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, mlp: str, layer_scale: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = SwiGLU(dim, mlp_hidden) if mlp == "swiglu" else Mlp(dim, mlp_hidden)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class PatchEmbed(nn.Module):
    """(B, 3, H, W) -> (B, D, H/p, W/p): one p x p stride-p convolution."""

    def __init__(self, patch_size: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x)
