import pytest
import torch

from tao_pytorch.backbones import NOT_YET_AVAILABLE, FrozenBatchNorm2d, build_backbone_body
from tao_pytorch.backbones.resnet import ResNet, load_pretrained_backbone

# torchvision's resnet parameter counts minus the 1000-class fc layer
TRUNK_PARAMS = {
    "resnet_18": 11_689_512 - 513_000,
    "resnet_34": 21_797_672 - 513_000,
    "resnet_50": 25_557_032 - 2_049_000,
}


@pytest.mark.parametrize("name", sorted(TRUNK_PARAMS))
def test_parameter_count_matches_torchvision(name):
    net = ResNet(name, frozen_bn=False)
    assert sum(p.numel() for p in net.parameters()) == TRUNK_PARAMS[name]


def test_torchvision_key_names():
    keys18 = set(ResNet("resnet_18", frozen_bn=False).state_dict())
    for k in [
        "conv1.weight",
        "bn1.running_mean",
        "bn1.num_batches_tracked",
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_var",
        "layer4.1.bn2.bias",
    ]:
        assert k in keys18
    keys50 = set(ResNet("resnet_50").state_dict())
    for k in [
        "layer1.0.conv3.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.weight",
        "layer3.5.bn3.running_mean",
        "layer4.2.conv2.weight",
    ]:
        assert k in keys50
    assert not any(k.startswith("fc.") for k in keys50)


def test_strides_channels_and_return_indices():
    net = ResNet("resnet_18", return_indices=[0, 1, 2, 3])
    outs = net(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 16, 24), (128, 8, 12), (256, 4, 6), (512, 2, 3)]
    assert net.strides == [4, 8, 16, 32]
    assert ResNet("resnet_50", return_indices=[1, 2, 3]).num_channels == [512, 1024, 2048]
    with pytest.raises(ValueError, match="0..3"):
        ResNet("resnet_18", return_indices=[4])


def test_torchvision_state_dict_loads(tmp_path):
    # A torchvision-layout checkpoint: trained-BN ResNet with num_batches_tracked and a classifier.
    torch.manual_seed(0)
    src = ResNet("resnet_18", return_indices=[1, 2, 3], frozen_bn=False)
    for m in src.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    state = dict(src.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet18_tv.pth"
    torch.save(state, path)
    dst = ResNet("resnet_18", return_indices=[1, 2, 3])
    assert isinstance(dst.bn1, FrozenBatchNorm2d)
    load_pretrained_backbone(dst, path)
    x = torch.randn(1, 3, 64, 64)
    src.eval()
    for a, b in zip(src(x), dst(x)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the same file wrapped and prefixed as in a detector checkpoint
    torch.save({"state_dict": {"backbone.0.body." + k: v for k, v in state.items()}}, tmp_path / "det.pth")
    load_pretrained_backbone(ResNet("resnet_18"), tmp_path / "det.pth")


def test_mismatch_error_names_file(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(ResNet("resnet_50").state_dict(), path)
    with pytest.raises(ValueError, match="r50.pth") as err:
        load_pretrained_backbone(ResNet("resnet_18"), path)
    assert "resnet_18" in str(err.value)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained_backbone(ResNet("resnet_18"), tmp_path / "nope.pth")


def test_unavailable_backbones_are_named():
    assert "vit_large_nvdinov2" not in NOT_YET_AVAILABLE  # implemented (backbones/vit_adapter.py)
    for name in ["vit_large_dinov2", "gc_vit_large_384"]:  # other names of known families
        with pytest.raises(NotImplementedError, match=name):
            build_backbone_body(name, [1, 2, 3])
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone_body("resnet_7", [1, 2, 3])


def test_train_backbone_flag():
    body = build_backbone_body("resnet_18", [1, 2], train_backbone=False)
    assert not any(p.requires_grad for p in body.parameters())
    body = build_backbone_body("resnet_18", [1, 2], train_backbone=True)
    trainable = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer1", "layer2", "layer3"}  # stem frozen (TAO freeze_at=[0]); layer4 never runs
