"""The backbones beyond ResNet on the whole user path: `dino train` (a real Lightning run) ->
export -> FP32 engine (tao-deploy, ONNX Runtime), the engine's outputs equal to PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e2e_helpers import INPUT_HW, NUM_VAL, clis, max_rel_diff, write_spec

from tao_core.specs import get_spec
from tao_deploy import load_engine
from tao_deploy.detr.detector import EngineDetector
from tao_pytorch.common.checkpoint import load_model_weights
from tao_pytorch.detr.data import build_dataloader
from tao_pytorch.detr.data.dataset import with_mask_channel
from tao_pytorch.detr.network import detr_network

# the smallest variant of each family (CPU-sized); the bigger ones share its code
BACKBONES = ["gc_vit_xxtiny", "fan_tiny", "vit_tiny_nvdinov2"]
# ViT-Adapters train on fixed square crops (LSJ), which also size their position embeddings
EXTRA_AUGMENTATION = {"vit_tiny_nvdinov2": {"fixed_random_crop": 128}}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_train_export_engine(backbone, data, tmp_path):
    model_cli, deploy_cli = clis("dino")
    sources = [{"image_dir": data["image_dir"], "json_file": data["json_file"]}]
    spec = write_spec(tmp_path / "spec.yaml", data, tmp_path / "results",
                      model={"backbone": backbone, "dn_number": 4},
                      dataset={"train_data_sources": sources,
                               "augmentation": {"scales": [128], "train_random_resize": [120, 128],
                                                "train_random_crop_min": 96, "train_random_crop_max": 128,
                                                "test_random_resize": INPUT_HW[0], "random_resize_max_size": 192,
                                                **EXTRA_AUGMENTATION.get(backbone, {})}},
                      # no validation (the engine check below is the comparison); checkpointing on,
                      # the spec default, so the backbone's checkpointed blocks run under training
                      train={"num_epochs": 1, "validation_interval": 2, "activation_checkpoint": True, "seed": 3})
    assert model_cli.run("train", ["-e", str(spec)]) == 0
    ckpt = tmp_path / "results" / "train" / "dino_model_latest.pth"
    onnx_file, engine_file = tmp_path / "model.onnx", tmp_path / "fp32.engine"
    assert model_cli.run("export", ["-e", str(spec), f"export.checkpoint={ckpt}",
                                    f"export.onnx_file={onnx_file}"]) == 0
    assert deploy_cli.run("gen_trt_engine", ["-e", str(spec), f"gen_trt_engine.onnx_file={onnx_file}",
                                             f"gen_trt_engine.trt_engine={engine_file}"]) == 0

    cfg = get_spec("dino").load("evaluate", str(spec), [f"evaluate.checkpoint={ckpt}"])
    images, mask, _ = next(iter(build_dataloader(cfg.dataset, "eval", batch_size=NUM_VAL, input_size=INPUT_HW)))
    model = detr_network("dino").build_model(cfg)
    load_model_weights(model, str(ckpt))
    with torch.no_grad():
        ref = model.eval()(with_mask_channel(images, mask))
    detector = EngineDetector(load_engine(engine_file), cfg.dataset.augmentation.input_mean,
                              cfg.dataset.augmentation.input_std, cfg.model.num_select, batch_size=4)
    first, second = detector.run_raw(images.numpy()[:4]), detector.run_raw(images.numpy()[4:])
    detector.close()
    logits, boxes = np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])
    rel = {"pred_logits": max_rel_diff(logits, ref["pred_logits"].numpy()),
           "pred_boxes": max_rel_diff(boxes, ref["pred_boxes"].numpy())}
    assert max(rel.values()) < 1e-4, rel
