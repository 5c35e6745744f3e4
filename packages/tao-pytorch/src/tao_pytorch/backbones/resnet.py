"""ResNet-18/34/50 feature extractors with torchvision's parameter names.

The module tree is exactly torchvision's (`conv1`, `bn1`, `layer1`..`layer4`, `downsample.0/1`)
minus the classifier (`avgpool`, `fc`), so a torchvision / timm ResNet state dict loads as is and
a detector's keys read `backbone.0.body.layer1.0.conv1.weight` like the reference repositories.

Stages are numbered 0..3 (= layer1..layer4, strides 4, 8, 16, 32), the numbering that TAO's
`return_interm_indices` uses. Index 4 (an extra stride-64 level) is not built here: as in
Deformable DETR / DINO it is a 3x3 stride-2 conv in the detector's `input_proj`.
"""

from typing import List, Sequence

import torch
from torch import nn

from tao_pytorch.backbones.levels import check_return_indices
from tao_pytorch.backbones.weights import load_backbone_weights


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all buffers, never trained).

    Detection batches are small (2-4 images per GPU), too small for useful batch statistics, so
    the ImageNet statistics are kept. Same buffers as BatchNorm2d; `num_batches_tracked` from a
    torchvision checkpoint is accepted and dropped.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, norm, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = norm(width)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv (torchvision's choice)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, norm, downsample=None):
        super().__init__()
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = norm(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = norm(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = norm(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# name -> (block, blocks per stage)
RESNET_SPECS = {
    "resnet_18": (BasicBlock, [2, 2, 2, 2]),
    "resnet_34": (BasicBlock, [3, 4, 6, 3]),
    "resnet_50": (Bottleneck, [3, 4, 6, 3]),
}


class ResNet(nn.Module):
    """ResNet trunk returning the outputs of the stages listed in `return_indices` (0..3)."""

    def __init__(self, name: str, return_indices: Sequence[int] = (1, 2, 3), frozen_bn: bool = True):
        super().__init__()
        if name not in RESNET_SPECS:
            raise ValueError(f"unknown ResNet {name!r}; choose one of {sorted(RESNET_SPECS)}")
        block, depths = RESNET_SPECS[name]
        self.name = name
        self.return_indices = check_return_indices(return_indices)
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (width, depth) in enumerate(zip([64, 128, 256, 512], depths)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or cin != width * block.expansion:
                downsample = nn.Sequential(
                    _conv1x1(cin, width * block.expansion, stride), norm(width * block.expansion)
                )
            blocks = [block(cin, width, stride, norm, downsample)]
            cin = width * block.expansion
            blocks += [block(cin, width, 1, norm) for _ in range(depth - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.stage_channels = [w * block.expansion for w in (64, 128, 256, 512)]
        self.stage_strides = [4, 8, 16, 32]
        self.num_channels = [self.stage_channels[i] for i in self.return_indices]
        self.strides = [self.stage_strides[i] for i in self.return_indices]
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(4):
            if i > self.return_indices[-1]:
                break  # later stages are not needed
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.return_indices:
                outs.append(x)
        return outs

    def freeze(self, train_backbone: bool) -> None:
        """train_backbone=False freezes everything; True freezes only the stem (TAO's freeze_at=[0]).

        Stages after the last returned one never run, so they are frozen too (no unused
        parameters for DDP to complain about).
        """
        unused = tuple(f"layer{i + 1}." for i in range(self.return_indices[-1] + 1, 4))
        for pname, p in self.named_parameters():
            if not train_backbone or not pname.startswith("layer") or pname.startswith(unused):
                p.requires_grad_(False)


def resnet_18(**kwargs) -> ResNet:
    return ResNet("resnet_18", **kwargs)


def resnet_34(**kwargs) -> ResNet:
    return ResNet("resnet_34", **kwargs)


def resnet_50(**kwargs) -> ResNet:
    return ResNet("resnet_50", **kwargs)


def load_pretrained_backbone(body: ResNet, path) -> None:
    """Load a local torchvision-layout ResNet state dict into `body`.

    Accepts a raw state dict or one wrapped in {"state_dict": ...} / {"model": ...}; strips DDP,
    Lightning and detector prefixes; ignores the classifier (`fc.*`) and `num_batches_tracked`.
    Anything else that does not fit raises ValueError naming the file and the offending keys
    (`backbones.weights.load_backbone_weights`).
    """
    load_backbone_weights(
        body,
        path,
        layout="torchvision ResNet",
        ignorable=lambda k: k.startswith("fc.") or k.endswith("num_batches_tracked"),
    )
