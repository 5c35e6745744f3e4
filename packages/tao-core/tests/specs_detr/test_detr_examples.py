"""Every YAML example printed in seeds 000 (DINO), 001 (Deformable DETR) and 003 loads.

The files in data/ are the seed examples with their line breaks / indentation restored (the
seed text collapsed them) and nothing else changed, duplicate `num_queries` included. Section
fragments (`optim:`, `augmentation:`) are mounted under their parent section by the test, and
a fragment that lacks what its task needs (data sources, a checkpoint) gets the minimum from
NEEDS. The paths in the examples don't exist: loading a spec never touches data.
"""

import logging

import pytest
from specs_detr_helpers import NEEDS, example_text, load_ok, spec_errors

# (file, network, task, mount point, needs added)
EXAMPLES = [
    ("000_dino_convert.yaml", "dino", "convert", "", False),
    ("000_dino_train.yaml", "dino", "train", "", False),
    ("000_dino_model.yaml", "dino", "train", "", True),
    ("000_dino_train_section.yaml", "dino", "train", "", True),
    ("000_dino_optim.yaml", "dino", "train", "train", True),
    ("000_dino_dataset.yaml", "dino", "train", "", False),
    ("000_dino_augmentation.yaml", "dino", "train", "dataset", True),
    ("000_dino_vit_train.yaml", "dino", "train", "", False),
    ("000_dino_evaluate.yaml", "dino", "evaluate", "", True),
    ("000_dino_inference.yaml", "dino", "inference", "", True),
    ("000_dino_export.yaml", "dino", "export", "", False),
    ("001_deformable_detr_convert.yaml", "deformable_detr", "convert", "", False),
    ("001_deformable_detr_train.yaml", "deformable_detr", "train", "", False),
    ("001_deformable_detr_model.yaml", "deformable_detr", "train", "", True),
    ("001_deformable_detr_train_section.yaml", "deformable_detr", "train", "", True),
    ("001_deformable_detr_optim.yaml", "deformable_detr", "train", "train", True),
    ("001_deformable_detr_dataset.yaml", "deformable_detr", "train", "", False),
    ("001_deformable_detr_augmentation.yaml", "deformable_detr", "train", "dataset", True),
    ("001_deformable_detr_evaluate.yaml", "deformable_detr", "evaluate", "", True),
    ("001_deformable_detr_inference.yaml", "deformable_detr", "inference", "", True),
    ("001_deformable_detr_export.yaml", "deformable_detr", "export", "", False),
    ("003_dino_automl_profile_train.yaml", "dino", "train", "", False),
]


def _load(name):
    row = next(r for r in EXAMPLES if r[0] == name)
    _, network, task, mount, needs = row
    return load_ok(network, task, example_text(name, mount), with_needs=needs)


def test_every_data_file_is_listed():
    from specs_detr_helpers import DATA

    assert sorted(p.name for p in DATA.glob("*.yaml")) == sorted(r[0] for r in EXAMPLES)


@pytest.mark.parametrize("name,network,task,mount,needs", EXAMPLES, ids=[r[0] for r in EXAMPLES])
def test_example_loads(name, network, task, mount, needs):
    cfg = load_ok(network, task, example_text(name, mount), with_needs=needs)
    assert cfg is not None
    if needs:
        assert NEEDS[task]  # the fragment really needed something


def test_dino_train_example_values(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = _load("000_dino_train.yaml")
    # `num_queries: 300` then `num_queries: 900`: the later wins, with a warning.
    assert cfg.model.num_queries == 900
    assert any("num_queries" in r.getMessage() for r in caplog.records)
    assert cfg.model.backbone == "fan_small"
    # model.pretrained_model_path is the examples' name for the backbone weights.
    assert cfg.model.pretrained_backbone_path == "/path/to/your-fan-small-pretrained-model"
    # YAML 1.1 reads 2e-5 as a string; the float fields take it as a number.
    assert cfg.train.optim.lr_backbone == pytest.approx(2e-5)
    assert cfg.train.optim.lr == pytest.approx(2e-4)
    assert list(cfg.dataset.augmentation.train_random_resize) == [400, 500, 600]
    assert cfg.dataset.train_data_sources[0].json_file.endswith("instances_train2017.json")


def test_dino_vit_example_values():
    cfg = _load("000_dino_vit_train.yaml")
    assert cfg.model.backbone == "vit_large_nvdinov2"
    assert cfg.dataset.augmentation.fixed_random_crop == 1024
    assert cfg.train.optim.layer_decay_rate == cfg.train.optim.lr_decay_rate == pytest.approx(0.65)


def test_a_vit_backbone_without_the_lsj_crop_is_one_clear_error():
    text = example_text("000_dino_vit_train.yaml").replace("fixed_random_crop: 1024", "fixed_random_crop: null")
    assert "fixed_random_crop: null" in text
    errors = spec_errors("dino", "train", text=text)
    assert [(e.path, e.value) for e in errors] == [("dataset.augmentation.fixed_random_crop", None)]
    assert "a crop size (a multiple of 32" in str(errors[0]) and "vit_large_nvdinov2" in str(errors[0])
    for backbone in ("vit_tiny_nvdinov2", "resnet_18"):  # every ViT needs it; other backbones do not
        overrides = [f"model.backbone={backbone}"]
        if backbone.startswith("vit_"):
            assert spec_errors("dino", "train", overrides, text=text)
        else:
            assert load_ok("dino", "train", text, overrides).dataset.augmentation.fixed_random_crop is None


def test_train_section_example_reconciles_gpus():
    # num_gpus: 8 with the default gpu_ids [0]: the larger setting wins (seed 004's rule).
    for name in ("000_dino_train_section.yaml", "001_deformable_detr_train_section.yaml"):
        cfg = _load(name)
        assert cfg.train.num_gpus == 8
        assert list(cfg.train.gpu_ids) == list(range(8))


def test_dataset_example_sources():
    cfg = _load("000_dino_dataset.yaml")
    assert cfg.dataset.test_data_sources.image_dir == "/path/to/coco/images/val2017/"
    # The example gives infer image_dir as one string; it is stored as a one-element list.
    assert list(cfg.dataset.infer_data_sources.image_dir) == ["/path/to/coco/images/val2017/"]
    assert cfg.dataset.infer_data_sources.classmap.endswith("coco_classmap.txt")
    # The same example serves evaluate and inference too (with a checkpoint).
    text = example_text("000_dino_dataset.yaml")
    load_ok("dino", "evaluate", text, ["evaluate.checkpoint=/m.pth"], with_needs=False)
    load_ok("dino", "inference", text, ["inference.checkpoint=/m.pth"], with_needs=False)


def test_ddetr_example_values():
    cfg = _load("001_deformable_detr_train.yaml")
    assert cfg.model.with_box_refine is True
    assert cfg.model.dropout_ratio == pytest.approx(0.3)
    assert list(cfg.train.optim.lr_steps) == [10, 20, 30, 40]
    assert cfg.train.num_epochs == 50


def test_export_and_inference_example_values():
    cfg = _load("000_dino_export.yaml")
    assert cfg.export.on_cpu is False and cfg.export.opset_version == 12 and cfg.export.batch_size == -1
    cfg = _load("001_deformable_detr_inference.yaml")
    assert dict(cfg.inference.color_map) == {"person": "red", "car": "blue"}


def test_convert_example_values():
    cfg = _load("000_dino_convert.yaml")
    assert cfg.num_shards == 32 and cfg.num_partitions == 1 and cfg.image_dir_name == "images"


def test_seed003_profile_values():
    cfg = _load("003_dino_automl_profile_train.yaml")
    assert cfg.dataset.num_classes == 5
    assert (cfg.train.num_epochs, cfg.train.checkpoint_interval, cfg.train.validation_interval) == (10, 10, 1)


def test_loaded_spec_is_read_only():
    from omegaconf.errors import ReadonlyConfigError

    cfg = _load("000_dino_train.yaml")
    with pytest.raises(ReadonlyConfigError):
        cfg.model.num_queries = 1
