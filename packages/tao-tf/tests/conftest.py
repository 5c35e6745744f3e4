"""Fixtures for tao-tf tests: tiny KITTI datasets copied from the repository's raccoon set."""

import os
import shutil
from pathlib import Path

import pytest

import tao_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before any TensorFlow import)

REPO = Path(__file__).resolve().parents[3]
RACCOON = REPO / "examples" / "data" / "raccoon"


def make_kitti(root: Path, count: int, split: str = "train", start: int = 0) -> Path:
    """Copy `count` raccoon images + labels into root/images, root/labels; returns root."""
    images = sorted((RACCOON / split / "images").iterdir())[start : start + count]
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for img in images:
        shutil.copy(img, root / "images" / img.name)
        shutil.copy(RACCOON / split / "labels" / (img.stem + ".txt"), root / "labels" / (img.stem + ".txt"))
    return root


def export_spec(root: Path, extension: str = ".jpg", extra: str = "", shards: int = 2, val_split: float = 20) -> str:
    return (
        "kitti_config {\n"
        f'  root_directory_path: "{root}"\n  image_dir_name: "images"\n  label_dir_name: "labels"\n'
        f'  image_extension: "{extension}"\n  partition_mode: "random"\n  num_partitions: 2\n'
        f"  val_split: {val_split}\n  num_shards: {shards}\n{extra}}}\n"
        f'image_directory_path: "{root}"\n'
    )


@pytest.fixture
def kitti10(tmp_path) -> Path:
    return make_kitti(tmp_path / "data", 10)


@pytest.fixture(autouse=True)
def _quiet_tf(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))


def experiment_spec(tfrecords: str, image_dir: Path, width: int = 128, height: int = 96, epochs: int = 2,
                    batch: int = 4, num_layers: int = 10, extra_model: str = "", first_validation: int = 1,
                    checkpoint_interval: int = 1, autoweighting: bool = True) -> str:  # fmt: skip
    """A one-class (raccoon) experiment spec with a tiny input, for fast tests."""
    return f"""random_seed: 42
dataset_config {{
  data_sources {{ tfrecords_path: "{tfrecords}" image_directory_path: "{image_dir}" }}
  image_extension: "jpg"
  target_class_mapping {{ key: "raccoon" value: "raccoon" }}
  validation_fold: 0
}}
augmentation_config {{
  preprocessing {{ output_image_width: {width} output_image_height: {height} output_image_channel: 3
                  enable_auto_resize: true min_bbox_width: 1.0 min_bbox_height: 1.0 }}
  spatial_augmentation {{ hflip_probability: 0.5 zoom_min: 0.9 zoom_max: 1.1 translate_max_x: 4.0
                         translate_max_y: 4.0 }}
  color_augmentation {{ hue_rotation_max: 25.0 saturation_shift_max: 0.2 contrast_scale_max: 0.1
                       contrast_center: 0.5 }}
}}
postprocessing_config {{
  target_class_config {{ key: "raccoon" value {{ clustering_config {{ coverage_threshold: 0.005 dbscan_eps: 0.15
      dbscan_min_samples: 0.05 minimum_bounding_box_height: 4 }} }} }}
}}
model_config {{
  arch: "resnet" num_layers: {num_layers} use_batch_norm: true all_projections: true
  objective_set {{ cov {{}} bbox {{ scale: 35.0 offset: 0.5 }} }}
  {extra_model}
}}
evaluation_config {{
  average_precision_mode: INTEGRATE validation_period_during_training: 1 first_validation_epoch: {first_validation}
  minimum_detection_ground_truth_overlap {{ key: "raccoon" value: 0.5 }}
  evaluation_box_config {{ key: "raccoon" value {{ minimum_height: 4 maximum_height: 9999 minimum_width: 4
                                                  maximum_width: 9999 }} }}
}}
cost_function_config {{
  target_classes {{ name: "raccoon" class_weight: 1.0 coverage_foreground_weight: 0.05
    objectives {{ name: "cov" initial_weight: 1.0 weight_target: 1.0 }}
    objectives {{ name: "bbox" initial_weight: 10.0 weight_target: 1.0 }} }}
  enable_autoweighting: {str(autoweighting).lower()} max_objective_weight: 0.9999 min_objective_weight: 0.0001
}}
training_config {{
  batch_size_per_gpu: {batch} num_epochs: {epochs}
  learning_rate {{ soft_start_annealing_schedule {{ min_learning_rate: 5e-6 max_learning_rate: 5e-4
                                                  soft_start: 0.1 annealing: 0.7 }} }}
  regularizer {{ type: L1 weight: 3e-9 }}
  optimizer {{ adam {{ epsilon: 1e-08 beta1: 0.9 beta2: 0.999 }} }}
  checkpoint_interval: {checkpoint_interval}
}}
bbox_rasterizer_config {{
  target_class_config {{ key: "raccoon" value {{ cov_center_x: 0.5 cov_center_y: 0.5 cov_radius_x: 0.4
                                                cov_radius_y: 0.4 bbox_min_radius: 1.0 }} }}
  deadzone_radius: 0.67
}}
"""
