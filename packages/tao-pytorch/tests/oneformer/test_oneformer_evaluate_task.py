"""`oneformer evaluate`: a network that outputs each image's ground truth as ideal logits scores
(nearly) perfectly through the real task (resize, padding, task tokens, upsampling, ids, metrics),
results.json equals the metrics on its own kpi; a checkpoint of another model and a trt_engine
are refused before any compute."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from oneformer_task_helpers import COCO, status_lines, write_spec

from tao_core.errors import TaoUserError
from tao_core.specs.oneformer import SPEC
from tao_pytorch.common.checkpoint import save_checkpoint
from tao_pytorch.oneformer.cli import CLI
from tao_pytorch.oneformer.data import build_dataloader, build_dataset
from tao_pytorch.oneformer.network import OneFormerNetwork, model_pixels, task_tokens

pytestmark = pytest.mark.skipif(COCO is None, reason="shared/data/coco_panoptic_sample not present")

# large enough that every segment survives the resize to the network and back
EVAL_AUG = {"test_min_size": 320, "test_max_size": 480}
KINDS = ("panoptic", "semantic", "instance")


def _key(images: torch.Tensor, tokens: torch.Tensor) -> str:
    return hashlib.sha1(images.numpy().tobytes() + tokens.numpy().tobytes()).hexdigest()


def _ideal_outputs(cfg) -> dict:
    """{(pixels, task tokens) hash: outputs}: each image's targets of that task as ideal logits."""
    table = {}
    q, c = cfg.model.one_former.num_object_queries, cfg.model.sem_seg_head.num_classes
    for kind in KINDS:
        dataset = build_dataset(cfg, "test", task=kind)
        for batch in build_dataloader(cfg, "test", dataset=dataset):
            b, _, h, w = batch["images"].shape
            logits = torch.full((b, q, c + 1), -10.0)
            logits[:, :, -1] = 10.0  # unused queries: "no object"
            masks = torch.full((b, q, h, w), -10.0)
            for i, t in enumerate(batch["targets"]):
                n = len(t["labels"])
                logits[i, :n, -1] = -10.0
                logits[i, torch.arange(n), t["labels"]] = 10.0
                masks[i, :n][t["masks"]] = 10.0
            table[_key(model_pixels(batch["images"], cfg.dataset), task_tokens(kind, b, cfg))] = {
                "pred_logits": logits, "pred_masks": masks}
    return table


@pytest.fixture
def oracle_spec(tmp_path, monkeypatch):
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "results", aug=EVAL_AUG,
                      model={"test": {"instance_on": True}, "test_topk_per_image": 40})
    cfg = SPEC.load("evaluate", str(spec), ["evaluate.checkpoint=x.pth"])
    real_build = OneFormerNetwork.build_model
    torch.manual_seed(0)
    weights = real_build(OneFormerNetwork(), cfg, with_text=False).state_dict()
    save_checkpoint({"state_dict": {f"model.{k}": v for k, v in weights.items()}}, tmp_path / "model.pth")
    table = _ideal_outputs(cfg)

    def build(network, cfg, with_text=True):
        model = real_build(network, cfg, with_text)  # the real model: the checkpoint must fit it
        model.forward = lambda images, task_ids, text_ids=None: table[_key(images, task_ids)]
        return model

    monkeypatch.setattr(OneFormerNetwork, "build_model", build)
    return spec, tmp_path


def test_ideal_outputs_score_near_one_for_every_kind(oracle_spec):
    spec, root = oracle_spec
    assert CLI.run("evaluate", ["-e", str(spec), f"evaluate.checkpoint={root / 'model.pth'}"]) == 0
    res = json.loads((root / "results" / "evaluate" / "results.json").read_text())
    assert res["kinds"] == ["panoptic", "semantic", "instance"] and res["num_images"] == 2
    # the masks make a round trip 427 x 640 -> 320 x 480 -> 427 x 640: a few boundary pixels move
    assert res["panoptic"]["PQ"] > 0.9 and res["panoptic"]["All"]["n"] == 8
    assert res["panoptic"]["RQ"] == pytest.approx(1.0)  # every segment found, none invented
    assert res["semantic"]["mIoU"] > 0.9 and res["instance"]["mAP50"] > 0.95
    assert res["kpi"]["PQ"] == res["panoptic"]["PQ"] and res["kpi"]["mAP"] == res["instance"]["mAP"]
    assert status_lines(root / "results", "evaluate")[-1]["status"] == "SUCCESS"


def test_a_checkpoint_of_another_model_is_refused(oracle_spec):
    spec, root = oracle_spec
    with pytest.raises(TaoUserError, match=r"model\.pth does not fit the model of this spec: .* of another shape"):
        CLI.run("evaluate", ["-e", str(spec), f"evaluate.checkpoint={root / 'model.pth'}",
                             "model.one_former.num_object_queries=30"])


def test_a_trt_engine_is_left_to_tao_deploy(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "results")
    with pytest.raises(TaoUserError, match=r"evaluate.trt_engine=m.engine: TensorRT engines are run by tao-deploy"):
        CLI.run("evaluate", ["-e", str(spec), "evaluate.trt_engine=m.engine"])
