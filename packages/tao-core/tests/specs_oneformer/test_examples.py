"""Every YAML example printed in seed 004 loads unchanged (data/*.yaml hold them as printed).

Example paths don't exist: loading checks the spec only and must not touch data.
"""

import pytest

from tao_core.specs.oneformer import SPEC

from ._util import DATA, TEST_DATA, TRAIN_DATA

SAMPLE = DATA / "sample_spec.yaml"


def test_sample_spec_loads_for_train():
    cfg = SPEC.load("train", SAMPLE)
    assert cfg.results_dir == "nvidia_tao_pytorch/cv/oneformer/checkpoints/coco/swin"
    assert cfg.train.results_dir == "nvidia_tao_pytorch/cv/oneformer/checkpoints/coco/swin/train"
    assert cfg.dataset.train.batch_size == 4 and cfg.dataset.val.num_workers == 4
    assert cfg.dataset.image_size == 1024 and cfg.dataset.cutmix_prob == 0.0
    assert list(cfg.model.backbone.swin.depths) == [2, 2, 18, 2]
    assert cfg.model.sem_seg_head.num_classes == 133
    assert cfg.train.num_epochs == 50 and cfg.train.num_nodes == 4 and cfg.train.iters_per_epoch == 15000
    # `precision: 32` is read as the Lightning spelling of fp32.
    assert cfg.train.precision == "32"
    # num_gpus 8 with the default gpu_ids [0]: the setting implying more GPUs wins.
    assert cfg.train.num_gpus == 8 and list(cfg.train.gpu_ids) == list(range(8))
    # The sample's spellings are settled onto the table's.
    assert cfg.train.pretrained_model_path == cfg.train.pretrained_model
    assert cfg.train.pretrained_backbone is None
    assert cfg.model.test.object_mask_threshold == 0.8 and cfg.model.object_mask_threshold == 0.8
    assert cfg.model.backbone.type == "D2SwinTransformer"


def test_sample_spec_loads_for_evaluate():
    cfg = SPEC.load("evaluate", SAMPLE)
    assert cfg.evaluate.results_dir == "nvidia_tao_pytorch/cv/oneformer/checkpoints/coco/swin/eval"
    assert cfg.evaluate.checkpoint.endswith("model_epoch_001_step_01850.pth")
    assert list(cfg.evaluate.gpu_ids) == [0]


def test_sample_spec_loads_for_inference():
    cfg = SPEC.load("inference", SAMPLE)
    assert cfg.inference.mode == "semantic"
    assert list(cfg.inference.image_size) == [1024, 1024]
    assert cfg.inference.images_dir == "/workspace/datasets/coco/val2017"


def test_sample_spec_loads_for_export_with_cli_arguments():
    # Seed: export.checkpoint and export.onnx_file are required command-line arguments.
    cfg = SPEC.load("export", SAMPLE, overrides=["export.checkpoint=/m.pth", "export.onnx_file=/m.onnx"])
    assert cfg.export.results_dir == "nvidia_tao_pytorch/cv/oneformer/checkpoints/coco/swin/export"


def test_train_fragment_loads():
    cfg = SPEC.load("train", DATA / "train.yaml", overrides=TRAIN_DATA)
    t = cfg.train
    assert (t.precision, t.num_gpus, t.checkpoint_interval, t.validation_interval, t.num_epochs) == ("fp16", 1, 10, 10, 50)
    assert (t.optim.type, t.optim.lr, t.optim.weight_decay) == ("AdamW", 0.0001, 0.05)


def test_evaluate_fragment_loads():
    cfg = SPEC.load("evaluate", DATA / "evaluate.yaml", overrides=TEST_DATA)
    assert cfg.evaluate.checkpoint == "/path/to/model.pth" and cfg.evaluate.num_gpus == 1


def test_inference_fragment_loads():
    cfg = SPEC.load("inference", DATA / "inference.yaml", overrides=["inference.images_dir=/data/images"])
    assert cfg.inference.checkpoint == "/path/to/model.pth" and cfg.inference.num_gpus == 1


def test_inference_fragment_can_read_images_from_dataset_test():
    SPEC.load("inference", DATA / "inference.yaml", overrides=["dataset.test.images=/data/images"])


def test_export_fragment_loads_as_is():
    cfg = SPEC.load("export", DATA / "export.yaml")
    e = cfg.export
    assert (e.checkpoint, e.onnx_file) == ("/path/to/model.pth", "/path/to/model.onnx")
    assert (e.on_cpu, e.opset_version, e.input_channel, e.input_width, e.input_height, e.batch_size) == (
        False, 12, 3, 960, 544, -1,
    )


@pytest.mark.parametrize(
    "task, overrides",
    [
        # `tao model oneformer train -e spec results_dir=... train.gpu_ids=... train.num_gpus=...`
        ("train", ["results_dir=/res", "train.gpu_ids=[0,1]", "train.num_gpus=2", "train.optim.lr=1e-4"]),
        ("evaluate", ["evaluate.checkpoint=/m.pth", "evaluate.gpu_ids=[1]", "evaluate.num_gpus=1"]),
        ("inference", ["inference.checkpoint=/m.pth", "inference.gpu_ids=[0]", "inference.num_gpus=1"]),
        ("export", ["results_dir=/res", "export.checkpoint=/m.pth", "export.onnx_file=/m.onnx"]),
        # The memory advice of seed 004.
        ("train", ["train.precision=fp16", "train.activation_checkpoint=True", "train.distributed_strategy=ddp_sharded",
                   "train.freeze=[backbone]", "dataset.dataset_type=serialized", "dataset.augmentation.fixed_padding=True"]),
    ],
)
def test_command_line_overrides_of_the_seed(task, overrides):
    SPEC.load(task, SAMPLE, overrides=overrides)


def test_every_example_file_has_a_test():
    assert sorted(p.name for p in DATA.glob("*.yaml")) == [
        "evaluate.yaml", "export.yaml", "inference.yaml", "sample_spec.yaml", "train.yaml",
    ]
