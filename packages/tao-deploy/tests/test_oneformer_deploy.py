"""tao deploy oneformer: gen_trt_engine (FP32 / FP16 / INT8), inference and evaluate on a tiny ONNX
with OneFormer's export contract (tao_deploy.oneformer.testing, no torch) and the shipped COCO
panoptic sample, against references computed here with onnxruntime + tao-core."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from PIL import Image

from tao_core.data.images import load_image_rgb
from tao_core.data.oneformer_ground_truth import load_eval_split
from tao_core.errors import TaoUserError
from tao_core.processing.oneformer import postprocess
from tao_core.tasks.oneformer import OneFormerEvaluation, kpi
from tao_core.tasks.oneformer_outputs import evaluation_input, network_input, task_tokens
from tao_core.testing import find_dataset
from tao_deploy import load_engine
from tao_deploy.detr.testing import tiny_detr
from tao_deploy.oneformer.cli import CLI
from tao_deploy.oneformer.testing import tiny_oneformer

REPO = Path(__file__).resolve().parents[3]
COCO = find_dataset("coco_panoptic_sample", REPO, marker="annotations/panoptic_val2017_sample.json")
pytestmark = pytest.mark.skipif(COCO is None, reason="shared/data/coco_panoptic_sample not present")
HW, C, Q, L = (32, 32), 133, 5, 16
TASK_NODES = ["task_mlp/layers.0/Gemm", "task_mlp/relu", "task_mlp/layers.1/Gemm"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("oneformer_deploy")
    onnx.save_model(tiny_oneformer(*HW, num_classes=C, num_queries=Q, task_len=L), root / "model.onnx")
    onnx.save_model(tiny_oneformer(*HW, num_classes=C, num_queries=Q, task_len=L, normalised=False),
                    root / "tao_model.onnx")
    # favours person and grass (both in the sample's ground truth), so the metrics are not all zero
    cats = [c["name"] for c in json.loads((COCO / "annotations/panoptic_val2017_sample.json").read_text())["categories"]]
    bias = {cats.index("person"): 20.0, cats.index("grass-merged"): 20.0}
    onnx.save_model(tiny_oneformer(*HW, num_classes=C, num_queries=Q, task_len=L, class_bias=bias),
                    root / "biased.onnx")
    return root


def write_spec(root: Path, name: str, **sections) -> str:
    spec = {
        "results_dir": str(root / "results"),
        "model": {"sem_seg_head": {"num_classes": C}, "object_mask_threshold": 0.0, "test_topk_per_image": 10,
                  "test": {"object_mask_threshold": 0.0, "test_topk_per_image": 10, "semantic_on": True}},
        "dataset": {"test": {"images": str(COCO / "val2017"),
                             "annotations": str(COCO / "annotations/panoptic_val2017_sample.json"),
                             "panoptic": str(COCO / "panoptic_val2017"), "batch_size": 2}},
        "gen_trt_engine": {"tensorrt": {"min_batch_size": 1, "opt_batch_size": 2, "max_batch_size": 2}},
    }
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def build(root: Path, name: str, onnx_name: str = "model.onnx", **trt) -> Path:
    engine = root / f"{name}.engine"
    if not engine.exists():
        spec = write_spec(root, name, gen_trt_engine={
            "onnx_file": str(root / onnx_name), "trt_engine": str(engine), "backend": "onnxruntime",
            "tensorrt": {"min_batch_size": 1, "opt_batch_size": 2, "max_batch_size": 2, **trt}})
        assert CLI.run("gen_trt_engine", ["-e", spec]) == 0
    return engine


def images():
    return [load_image_rgb(p) for p in sorted((COCO / "val2017").iterdir())]


def reference_outputs(onnx_path: Path, mode: str):
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.stack([network_input(im, HW) for im in images()])
    return sess.run(None, {"images": x, "task_tokens": task_tokens(mode, L, len(x))})


def test_fp32_engine_inference_writes_what_onnxruntime_and_tao_core_give(root):
    engine = build(root, "fp32")
    meta = load_engine(engine).metadata
    assert meta["images_range"] == "rgb_0_255" and meta["task_seq_len"] == L and len(meta["class_names"]) == C
    stems = sorted(p.stem for p in (COCO / "val2017").iterdir())
    for mode in ("semantic", "panoptic", "instance"):
        out = root / f"infer_{mode}"
        spec = write_spec(root, f"infer_{mode}", inference={"trt_engine": str(engine), "mode": mode,
                                                             "results_dir": str(out)})
        assert CLI.run("inference", ["-e", spec]) == 0
        assert sorted(p.stem for p in out.glob("images_annotated/*.jpg")) == stems
        logits, masks = reference_outputs(root / "model.onnx", mode)
        image = images()[0]
        if mode == "semantic":
            class_map, _ = postprocess("semantic", logits[0], masks[0], padded_hw=HW, valid_hw=HW,
                                       output_hw=image.shape[:2])
            cats = [c["id"] for c in json.loads((COCO / "annotations/panoptic_val2017_sample.json").read_text())[
                "categories"]]
            want = np.asarray(cats)[class_map]
            np.testing.assert_array_equal(np.asarray(Image.open(out / "semantic" / f"{stems[0]}.png")), want)
        elif mode == "panoptic":
            pan = json.loads((out / "panoptic.json").read_text())
            assert len(pan["annotations"]) == 2 and all(a["segments_info"] for a in pan["annotations"])
            assert (out / "panoptic" / f"{stems[1]}.png").is_file()
        else:
            found = json.loads((out / "instances.json").read_text())
            assert len(found) == 20 and {r["image_id"] for r in found} == {1, 2}


def test_fp16_engine_keeps_the_task_branch_in_float_and_agrees_with_fp32(root):
    fp16 = build(root, "fp16", data_type="fp16")
    status = [json.loads(line) for line in (root / "results/gen_trt_engine/status.json").read_text().splitlines()]
    agreement = [s["kpi"] for s in status if s.get("kpi", {}).get("agreement_mean_iou") is not None][-1]
    assert agreement["agreement_mean_iou"] > 0.9
    payload = onnx.load_from_string(_payload(fp16))
    kept = {n.name: n for n in payload.graph.node}
    for name in TASK_NODES:  # token ids above 2048 are not integers in FP16: the task MLP stays float32
        weights = [i for i in payload.graph.initializer if i.name in kept[name].input]
        assert all(w.data_type == onnx.TensorProto.FLOAT for w in weights), name
    with load_engine(build(root, "fp32")) as e32, load_engine(fp16) as e16:
        x = np.stack([network_input(im, HW) for im in images()])
        feed = {"images": x, "task_tokens": task_tokens("panoptic", L, 2)}
        a, b = e32.run(feed), e16.run(feed)
    for name in ("pred_logits", "pred_masks"):
        rel = np.abs(a[name] - b[name]).max() / np.abs(a[name]).max()
        print(f"oneformer FP16 vs FP32 {name}: max rel diff {rel:.2e}")
        assert rel < 1e-2, name


def _payload(engine: Path) -> bytes:
    from tao_deploy.engine.engine_file import read_engine

    return bytes(read_engine(engine)[1])


def test_int8_engine_calibrates_on_images_with_every_task(root):
    cache = root / "cal.cache"
    engine = build(root, "int8", data_type="int8",
                   calibration={"cal_image_dir": [str(COCO / "val2017")], "cal_batch_size": 1, "cal_batches": 2,
                                "cal_cache_file": str(cache), "method": "minmax"})
    assert cache.is_file() and load_engine(engine).precision == "int8"
    nodes = {n.name: n for n in onnx.load_from_string(_payload(engine)).graph.node}
    assert any(n.op_type == "QuantizeLinear" for n in nodes.values())
    # the task MLP reads the token ids and its weights unquantized
    assert list(nodes["task_mlp/layers.0/Gemm"].input) == ["task_tokens", "task_w1", "task_b1"]
    assert list(nodes["task_mlp/layers.1/Gemm"].input) == ["t1r", "task_w2", "task_b2"]


def test_tao_onnx_without_normalisation_gets_normalised_images(root):
    ours, tao = build(root, "fp32"), build(root, "tao_fp32", onnx_name="tao_model.onnx")
    assert load_engine(tao).metadata["images_range"] == "normalised"
    outs = {}
    for name, engine in (("ours", ours), ("tao", tao)):
        out = root / f"infer_{name}"
        spec = write_spec(root, f"infer_{name}", inference={"trt_engine": str(engine), "mode": "semantic",
                                                             "results_dir": str(out)})
        assert CLI.run("inference", ["-e", spec]) == 0
        outs[name] = sorted(out.glob("semantic/*.png"))
    for a, b in zip(outs["ours"], outs["tao"], strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_evaluate_scores_like_tao_core_on_onnxruntime(root):
    engine = build(root, "biased", onnx_name="biased.onnx")
    out = root / "eval"
    spec = write_spec(root, "eval", model={"mode": "panoptic"}, evaluate={"trt_engine": str(engine),
                                                                          "results_dir": str(out)})
    assert CLI.run("evaluate", ["-e", spec]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["kinds"] == ["panoptic", "semantic"] and results["num_images"] == 2

    from tao_core.specs.oneformer import SPEC

    cfg = SPEC.load("evaluate", spec)
    split = load_eval_split(cfg, "test")
    ev = OneFormerEvaluation(["panoptic", "semantic"], split.table.categories(), C, 255, object_mask_threshold=0.0,
                             overlap_threshold=0.8, test_topk_per_image=10)
    aug = cfg.dataset.augmentation  # the checkpoint evaluation's resize, aspect kept, padded with the mean
    pairs = [evaluation_input(im, HW, aug.test_min_size, aug.test_max_size, cfg.dataset.pixel_mean) for im in images()]
    assert [hw for _, hw in pairs] == [(21, 32), (18, 32)]  # 640 x 427 and 640 x 360 fitted into 32 x 32
    sess = ort.InferenceSession(str(root / "biased.onnx"), providers=["CPUExecutionProvider"])
    x = np.stack([p for p, _ in pairs])
    for kind in ("panoptic", "semantic"):
        logits, masks = sess.run(None, {"images": x, "task_tokens": task_tokens(kind, L, len(x))})
        for i in range(2):
            ev.add(logits[i], masks[i], padded_hw=HW, valid_hw=pairs[i][1], ground_truth=split.ground_truth(i),
                   kinds=[kind])
    assert results["kpi"]["mIoU"] > 0 and results["kpi"]["pACC"] > 0.1
    assert results["kpi"] == pytest.approx(kpi(ev.compute()))


def test_bad_inputs_are_one_line(root, tmp_path):
    engine = build(root, "fp32")
    spec = write_spec(tmp_path, "missing_onnx", gen_trt_engine={"onnx_file": str(tmp_path / "none.onnx"),
                                                                "trt_engine": str(tmp_path / "x.engine")})
    with pytest.raises(TaoUserError, match="none.onnx"):
        CLI.run("gen_trt_engine", ["-e", spec])
    onnx.save_model(tiny_detr(32, 32), tmp_path / "detr.onnx")
    spec = write_spec(tmp_path, "detr", gen_trt_engine={"onnx_file": str(tmp_path / "detr.onnx"),
                                                        "trt_engine": str(tmp_path / "x.engine")})
    with pytest.raises(TaoUserError, match=r"detr.onnx: a OneFormer model has the inputs"):
        CLI.run("gen_trt_engine", ["-e", spec])
    assert not (tmp_path / "x.engine").exists()

    spec = write_spec(tmp_path, "no_engine", inference={"trt_engine": str(tmp_path / "none.engine")})
    with pytest.raises(TaoUserError, match="inference.trt_engine: .*none.engine does not exist"):
        CLI.run("inference", ["-e", spec])
    spec = write_spec(tmp_path, "mode", inference={"trt_engine": str(engine), "mode": "depth"})
    with pytest.raises(TaoUserError, match="inference.mode: got 'depth'"):
        CLI.run("inference", ["-e", spec])
    (tmp_path / "empty").mkdir()
    spec = write_spec(tmp_path, "empty", inference={"trt_engine": str(engine), "images_dir": str(tmp_path / "empty")})
    with pytest.raises(TaoUserError, match="inference.images_dir: no .* images in"):
        CLI.run("inference", ["-e", spec])
