"""OneFormer end to end: a tiny Swin OneFormer checkpoint -> `tao model oneformer export` ->
`tao deploy oneformer gen_trt_engine` FP32 and FP16 -> deploy inference / evaluate, compared with
the PyTorch task and the PyTorch model on the same inputs (the shipped COCO panoptic sample).

Both sides resize each image to the export size (inference.image_size = the engine's H x W), so
the checkpoint and the engine see the same pixels and their outputs are compared file for file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from tao_core.data.coco_panoptic import read_panoptic_png
from tao_core.data.images import load_image_rgb
from tao_core.specs.oneformer import SPEC
from tao_core.tasks.oneformer_outputs import network_input, task_tokens
from tao_core.testing import find_dataset
from tao_deploy import load_engine
from tao_deploy.oneformer.cli import CLI as DEPLOY
from tao_pytorch.common.checkpoint import save_checkpoint
from tao_pytorch.oneformer.cli import CLI as MODEL
from tao_pytorch.oneformer.model.oneformer import build_oneformer

REPO = Path(__file__).resolve().parents[2]
COCO = find_dataset("coco_panoptic_sample", REPO, marker="annotations/panoptic_val2017_sample.json")
pytestmark = pytest.mark.skipif(COCO is None, reason="shared/data/coco_panoptic_sample not present")
HW = (64, 64)
# the tiny Swin OneFormer of tao-pytorch's model tests, with the sample's 133 classes
TINY = [
    "model.backbone.swin.embed_dim=32", "model.backbone.swin.depths=[1,1,1,1]",
    "model.backbone.swin.num_heads=[1,2,4,8]", "model.backbone.swin.window_size=4",
    "model.backbone.swin.drop_path_rate=0.0", "model.sem_seg_head.num_classes=133",
    "model.sem_seg_head.convs_dim=64", "model.sem_seg_head.mask_dim=64", "model.sem_seg_head.transformer_enc_layers=1",
    "model.one_former.hidden_dim=64", "model.one_former.nheads=4", "model.one_former.dim_feedforward=64",
    "model.one_former.dec_layers=4", "model.one_former.num_object_queries=6", "model.one_former.class_dec_layers=1",
    "model.text_encoder.width=64", "model.text_encoder.num_layers=1", "model.text_encoder.n_ctx=2",
    "model.text_encoder.context_length=16",
    "model.object_mask_threshold=0.0", "model.test.object_mask_threshold=0.0",
    "model.test_topk_per_image=10", "model.test.test_topk_per_image=10",
]
FIGURES: dict = {}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("oneformer_e2e")
    cfg = OmegaConf.merge(SPEC.defaults("train"), OmegaConf.from_dotlist(TINY))
    torch.manual_seed(0)
    model = build_oneformer(cfg, with_text=False).eval()
    cats = [c["name"] for c in json.loads((COCO / "annotations/panoptic_val2017_sample.json").read_text())["categories"]]
    with torch.no_grad():  # confident classes, favouring two of the sample's: panoptic keeps segments, metrics > 0
        model.sem_seg_head.predictor.class_embed.weight.mul_(20.0)
        model.sem_seg_head.predictor.class_embed.bias[[cats.index("person"), cats.index("grass-merged")]] += 30.0
    save_checkpoint({"state_dict": model.state_dict()}, root / "model.pth")
    spec = {
        "results_dir": str(root / "results"),
        "dataset": {"test": {"images": str(COCO / "val2017"),
                             "annotations": str(COCO / "annotations/panoptic_val2017_sample.json"),
                             "panoptic": str(COCO / "panoptic_val2017"), "batch_size": 2},
                    "augmentation": {"test_min_size": 48, "test_max_size": 64}},
        "export": {"checkpoint": str(root / "model.pth"), "onnx_file": str(root / "model.onnx"),
                   "input_height": HW[0], "input_width": HW[1]},
        "inference": {"checkpoint": str(root / "model.pth"), "image_size": list(HW)},
        "evaluate": {"checkpoint": str(root / "model.pth")},
        "gen_trt_engine": {"onnx_file": str(root / "model.onnx"),
                           "tensorrt": {"min_batch_size": 1, "opt_batch_size": 2, "max_batch_size": 2}},
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    p = {"root": root, "spec": str(root / "spec.yaml"), "model": model, "cfg": cfg}
    assert MODEL.run("export", ["-e", p["spec"], *TINY]) == 0
    for precision in ("fp32", "fp16"):
        assert DEPLOY.run("gen_trt_engine", ["-e", p["spec"], *TINY, f"gen_trt_engine.trt_engine={root}/{precision}.engine",
                                             f"gen_trt_engine.tensorrt.data_type={precision}"]) == 0
    yield p
    print("\noneformer e2e figures:", json.dumps(FIGURES, indent=1, sort_keys=True))


def images():
    return [load_image_rgb(p) for p in sorted((COCO / "val2017").iterdir())]


def test_engines_follow_the_pytorch_model(pipeline):
    x = np.stack([network_input(im, HW) for im in images()])
    tokens = task_tokens("panoptic", 16, len(x))
    with torch.no_grad():
        ref = pipeline["model"](torch.from_numpy(x), torch.from_numpy(tokens))
    for precision, limit in (("fp32", 1e-4), ("fp16", 2e-2)):
        with load_engine(pipeline["root"] / f"{precision}.engine") as engine:
            out = engine.run({"images": x, "task_tokens": tokens})
        for name in ("pred_logits", "pred_masks"):
            want = ref[name].numpy()
            rel = float(np.abs(out[name] - want).max() / np.abs(want).max())
            FIGURES[f"{precision}_vs_pytorch_{name}_max_rel_diff"] = rel
            assert rel < limit, (precision, name, rel)


@pytest.mark.parametrize("mode", ["semantic", "panoptic"])
def test_engine_inference_writes_the_pytorch_task_outputs(pipeline, mode):
    root = pipeline["root"]
    assert MODEL.run("inference", ["-e", pipeline["spec"], *TINY, f"inference.mode={mode}",
                                   f"inference.results_dir={root}/pt_{mode}"]) == 0
    assert DEPLOY.run("inference", ["-e", pipeline["spec"], *TINY, f"inference.mode={mode}",
                                    f"inference.trt_engine={root}/fp32.engine",
                                    f"inference.results_dir={root}/trt_{mode}"]) == 0
    stems = sorted(p.stem for p in (COCO / "val2017").iterdir())
    for stem in stems:
        if mode == "semantic":
            a = np.asarray(Image.open(root / f"pt_{mode}/semantic/{stem}.png"))
            b = np.asarray(Image.open(root / f"trt_{mode}/semantic/{stem}.png"))
        else:
            a = read_panoptic_png(root / f"pt_{mode}/panoptic/{stem}.png")
            b = read_panoptic_png(root / f"trt_{mode}/panoptic/{stem}.png")
        agree = float((a == b).mean())
        FIGURES[f"{mode}_pixels_equal_{stem}"] = agree
        assert agree > 0.999, (mode, stem, agree)
    if mode == "panoptic":
        pt = json.loads((root / "pt_panoptic/panoptic.json").read_text())["annotations"]
        trt = json.loads((root / "trt_panoptic/panoptic.json").read_text())["annotations"]
        assert [[s["category_id"] for s in a["segments_info"]] for a in pt] == \
               [[s["category_id"] for s in a["segments_info"]] for a in trt]


def test_engine_evaluation_equals_the_pytorch_evaluate_task(pipeline):
    """`tao deploy oneformer evaluate` on the FP32 engine scores what `tao model oneformer evaluate`
    scores on the checkpoint: the engine is exported at the PyTorch batch's padded size (64 x 64:
    both images resize to 43 x 64 and 36 x 64 at test_min_size 48 / test_max_size 64), and the
    deploy side resizes keeping the aspect and pads with the mean, as the PyTorch loader does."""
    root = pipeline["root"]
    common = [*TINY, "model.mode=panoptic", "model.test.semantic_on=true"]
    assert MODEL.run("evaluate", ["-e", pipeline["spec"], *common, f"evaluate.checkpoint={root}/model.pth",
                                  f"evaluate.results_dir={root}/eval_pytorch"]) == 0
    want = json.loads((root / "eval_pytorch/results.json").read_text())["kpi"]
    results = {}
    for precision in ("fp32", "fp16"):
        assert DEPLOY.run("evaluate", ["-e", pipeline["spec"], *common, f"evaluate.trt_engine={root}/{precision}.engine",
                                       f"evaluate.results_dir={root}/eval_{precision}"]) == 0
        results[precision] = json.loads((root / f"eval_{precision}/results.json").read_text())["kpi"]
    for name in ("PQ", "mIoU", "pACC"):
        FIGURES[name] = {"pytorch": want[name], "fp32": results["fp32"][name], "fp16": results["fp16"][name]}
    assert want["mIoU"] > 0 and want["pACC"] > 0  # (a random model matches no segment at IoU > 0.5: PQ 0)
    assert results["fp32"] == pytest.approx(want, abs=1e-4)
    for name in ("PQ", "mIoU", "pACC"):
        assert results["fp16"][name] == pytest.approx(want[name], abs=0.05), name
