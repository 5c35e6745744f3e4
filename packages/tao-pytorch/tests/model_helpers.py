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


def assert_trunk_onnx_matches(net, x, path, num_levels: int) -> None:
    """Export backbone trunk `net` (eval mode) with a dynamic batch and check ONNX Runtime gives
    its outputs (1e-4) at `x` and at a batch of two."""
    import warnings

    import onnx
    import onnxruntime as ort

    names = [f"p{i}" for i in range(num_levels)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), input_names=["images"], output_names=names, opset_version=17,
                          dynamo=False, dynamic_axes={n: {0: "batch"} for n in ["images", *names]})
    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for xb in (x, torch.randn(2, *x.shape[1:])):  # dynamic batch: per-image windows / grids stay fixed
        with torch.no_grad():
            expected = net(xb)
        got = sess.run(None, {"images": xb.numpy()})
        assert len(got) == len(expected) == num_levels
        for e, g in zip(expected, got):
            torch.testing.assert_close(torch.from_numpy(g), e, rtol=1e-4, atol=1e-4)


def seeded_state(net) -> dict:
    """Weights independent of a trunk's initialisation code (what the pinned TAO fingerprints were
    computed on): every float tensor from one generator in sorted key order, 1 + 0.05 N(0, 1)
    where the tensor starts as ones (norm weights, layer scales, running variances), 0.05 N(0, 1)
    elsewhere; integer buffers kept."""
    g = torch.Generator().manual_seed(1234)
    out = {}
    for k, t in sorted(net.state_dict().items()):
        if not t.dtype.is_floating_point:
            out[k] = t.clone()
            continue
        v = torch.randn(t.shape, generator=g) * 0.05
        out[k] = 1 + v if bool((t == 1).all()) else v
    return out


def assert_fingerprints(outs, fingerprints, probe: int) -> None:
    """Each output level against (sum of |values| to 1e-5 relative, [first, probe-th, last] values)."""
    assert len(outs) == len(fingerprints)
    for out, (abs_sum, values) in zip(outs, fingerprints):
        f = out.flatten()
        assert abs(out.abs().sum().item() - abs_sum) / abs_sum < 1e-5
        torch.testing.assert_close(torch.stack([f[0], f[probe], f[-1]]), torch.tensor(values), rtol=1e-4, atol=1e-5)
