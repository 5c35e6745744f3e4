"""oneformer export and inference through the CLI on a tiny Swin OneFormer (random weights saved
as a checkpoint) and the shipped COCO panoptic sample: the ONNX contract, ONNX Runtime = PyTorch,
every output of every inference mode, and the one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image
from test_oneformer_model import TINY

from tao_core.data.coco_panoptic import read_panoptic_png
from tao_core.errors import TaoUserError
from tao_core.specs.oneformer import SPEC
from tao_core.tasks.oneformer_outputs import INPUT_RANGE, INPUT_RANGE_KEY, network_input, task_tokens
from tao_core.testing import find_dataset
from tao_pytorch.common.checkpoint import save_checkpoint
from tao_pytorch.oneformer.cli import CLI
from tao_pytorch.oneformer.model.oneformer import build_oneformer

REPO = Path(__file__).resolve().parents[4]
COCO = find_dataset("coco_panoptic_sample", REPO, marker="annotations/panoptic_val2017_sample.json")
pytestmark = pytest.mark.skipif(COCO is None, reason="shared/data/coco_panoptic_sample not present")
HW = (64, 64)
# TINY with the sample's 133 COCO panoptic classes, so the categories name every class
OVERRIDES = [o for o in TINY if not o.startswith("model.sem_seg_head.num_classes")] + [
    "model.sem_seg_head.num_classes=133", "model.object_mask_threshold=0.0", "model.test.object_mask_threshold=0.0"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("oneformer_tasks")
    cfg = OmegaConf.merge(SPEC.defaults("train"), OmegaConf.from_dotlist(OVERRIDES))
    torch.manual_seed(0)
    model = build_oneformer(cfg, with_text=False)
    with torch.no_grad():  # confident classes, so panoptic keeps segments and instances score high
        model.sem_seg_head.predictor.class_embed.weight.mul_(20.0)
    checkpoint = root / "model.pth"
    save_checkpoint({"state_dict": model.state_dict()}, checkpoint)
    images = root / "images"
    shutil.copytree(COCO / "val2017", images)
    spec = {
        "results_dir": str(root / "results"),
        "dataset": {"test": {"images": str(images),
                             "annotations": str(COCO / "annotations/panoptic_val2017_sample.json"),
                             "panoptic": str(COCO / "panoptic_val2017")}},
        "export": {"checkpoint": str(checkpoint), "input_height": HW[0], "input_width": HW[1]},
        "inference": {"checkpoint": str(checkpoint), "image_size": list(HW)},
    }
    spec_file = root / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    return {"root": root, "spec": spec_file, "checkpoint": checkpoint, "model": model.eval(), "images": images}


def run(setup, task, *extra):
    return CLI.run(task, ["-e", str(setup["spec"]), *OVERRIDES, *extra])


def status_lines(setup, task):
    path = setup["root"] / "results" / task / "status.json"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_contract_and_ort_parity(setup):
    onnx_file = setup["root"] / "model.onnx"
    assert run(setup, "export", f"export.onnx_file={onnx_file}") == 0
    model = onnx.load(str(onnx_file))
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs == {"images": ["batch", 3, *HW], "task_tokens": ["batch", 16]}
    assert [o.name for o in model.graph.output] == ["pred_logits", "pred_masks"]
    assert {p.key: p.value for p in model.metadata_props}[INPUT_RANGE_KEY] == INPUT_RANGE
    assert model.opset_import[0].version >= 16  # the seed's default 12 has no GridSample: raised
    assert (setup["root"] / "labels.txt").read_text().splitlines()[:2] == ["person", "bicycle"]
    kpi = [s["kpi"] for s in status_lines(setup, "export") if s.get("kpi")]
    assert kpi and kpi[-1]["ort_max_abs_diff"] < 1e-3
    print(f"oneformer export: ONNX Runtime vs PyTorch max abs diff {kpi[-1]['ort_max_abs_diff']:.3g}")

    # a batch of 2 on a real image, each with another task: same numbers as PyTorch
    image = np.asarray(Image.open(next(iter(sorted(setup["images"].iterdir())))).convert("RGB"))
    x = np.stack([network_input(image, HW)] * 2)
    tokens = np.concatenate([task_tokens("semantic", 16), task_tokens("instance", 16)])
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    logits, masks = sess.run(None, {"images": x, "task_tokens": tokens})
    with torch.no_grad():
        ref = setup["model"](torch.from_numpy(x), torch.from_numpy(tokens))
    assert logits.shape == (2, 6, 134) and masks.shape == (2, 6, HW[0] // 4, HW[1] // 4)
    np.testing.assert_allclose(logits, ref["pred_logits"].numpy(), atol=1e-3)
    np.testing.assert_allclose(masks, ref["pred_masks"].numpy(), atol=1e-3)
    assert np.abs(logits[0] - logits[1]).max() > 1e-4  # the task input matters

    # an existing file is never replaced
    before = onnx_file.read_bytes()
    with pytest.raises(TaoUserError, match="already exists"):
        run(setup, "export", f"export.onnx_file={onnx_file}")
    assert onnx_file.read_bytes() == before


@pytest.mark.parametrize("mode", ["semantic", "panoptic", "instance"])
def test_inference_writes_every_output_of_the_mode(setup, mode):
    out = setup["root"] / f"infer_{mode}"
    topk = ["model.test_topk_per_image=10", "model.test.test_topk_per_image=10"] if mode == "instance" else []
    assert run(setup, "inference", f"inference.mode={mode}", f"inference.results_dir={out}", *topk) == 0
    stems = sorted(p.stem for p in setup["images"].iterdir())
    annotated = sorted(out.glob("images_annotated/*.jpg"))
    assert [p.stem for p in annotated] == stems
    shot = np.asarray(Image.open(annotated[0]))
    original = np.asarray(Image.open(sorted(setup["images"].iterdir())[0]).convert("RGB"))
    assert shot.shape == original.shape and np.abs(shot.astype(int) - original).mean() > 5  # something drawn
    images = json.loads((out / "images.json").read_text())
    assert [im["id"] for im in images] == [1, 2]
    if mode == "semantic":
        ids = np.asarray(Image.open(out / "semantic" / f"{stems[0]}.png"))
        assert ids.shape == original.shape[:2]
        cats = {c["id"] for c in json.loads((COCO / "annotations/panoptic_val2017_sample.json").read_text())["categories"]}
        assert set(np.unique(ids).tolist()) <= cats
    elif mode == "panoptic":
        pan = json.loads((out / "panoptic.json").read_text())
        assert [a["file_name"] for a in pan["annotations"]] == [f"{s}.png" for s in stems]
        seg = read_panoptic_png(out / "panoptic" / f"{stems[0]}.png")
        info = pan["annotations"][0]["segments_info"]
        assert info, "no segment kept"
        assert sorted(set(np.unique(seg).tolist()) - {0}) == sorted(s["id"] for s in info)
        for s in info:
            assert s["area"] == int((seg == s["id"]).sum()) and s["category_id"] in {c["id"] for c in pan["categories"]}
    else:
        results = json.loads((out / "instances.json").read_text())
        assert {r["image_id"] for r in results} == {1, 2}
        assert len(results) == 2 * 10  # test_topk_per_image of the 6 queries x 133 classes, per image
        r = results[0]
        assert set(r) >= {"image_id", "category_id", "score", "segmentation", "bbox"}
        assert r["segmentation"]["size"] == list(original.shape[:2])


def test_a_bad_image_is_skipped_and_a_wrong_mode_refused(setup, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(setup["images"], folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert run(setup, "inference", f"inference.images_dir={folder}", f"inference.results_dir={out}") == 0
    assert len(list(out.glob("images_annotated/*"))) == 2
    skipped = [s for s in status_lines(setup, "inference") if s.get("skipped")]
    assert skipped[-1]["skipped"]["files"] == [str(folder / "broken.jpg")]

    with pytest.raises(TaoUserError, match="inference.mode: got .depth.; expected one of"):
        run(setup, "inference", "inference.mode=depth")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TaoUserError, match=r"inference.images_dir: no .* images in"):
        run(setup, "inference", f"inference.images_dir={empty}")
    with pytest.raises(TaoUserError, match="export.checkpoint"):
        run(setup, "export", f"export.checkpoint={tmp_path / 'missing.pth'}", f"export.onnx_file={tmp_path / 'x.onnx'}")
    assert not (tmp_path / "x.onnx").exists()
