"""DetectNet_v2 specs: protobuf text (prototxt) as in TAO's TF1 DetectNet_v2.

    SPEC.load("train", "experiment_spec.txt", ["training_config.num_epochs=10"])

parses the file with `google.protobuf.text_format` into the task's message (schemas in
`tao_core/proto/detectnet_v2/*.proto`), applies `dotted.path=value` overrides, then checks
the rules of `tao_core/proto/detectnet_v2/rules.py` and raises one SpecError, or SpecErrors
listing every problem. Tasks:

    dataset_convert                                    -> DatasetExportConfig
    train, evaluate, prune, export, calibration_tensorfile -> Experiment
    inference                                          -> Inference

proto3 keeps no custom defaults, so an unset scalar reads as 0 / "" / false / first enum value.
The documented defaults are in `DEFAULTS` (and in the JSON Schema); rules treat a zero as unset
where the documentation gives a non-zero default. `partial=True` skips the "must be set"
checks (a task's required blocks and fields), for loading one documented block on its own;
values that are set are always checked.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Sequence

from google.protobuf.message import Message

from tao_core.errors import SpecError, SpecErrors, TaoUserError
from tao_core.proto import textspec
from tao_core.proto.detectnet_v2 import rules
from tao_core.proto.detectnet_v2.dataset_export_pb2 import DatasetExportConfig
from tao_core.proto.detectnet_v2.experiment_pb2 import Experiment
from tao_core.proto.detectnet_v2.inference_pb2 import Inference
from tao_core.spec.validate import did_you_mean

NETWORK = "detectnet_v2"
TASKS: dict[str, type[Message]] = {
    "dataset_convert": DatasetExportConfig,
    "train": Experiment,
    "evaluate": Experiment,
    "prune": Experiment,
    "export": Experiment,
    "calibration_tensorfile": Experiment,
    "inference": Inference,
}
_TEMPLATES = {DatasetExportConfig: "dataset_convert.txt", Experiment: "experiment.txt", Inference: "inference.txt"}

# Top-level blocks each task reads. prune takes no spec in TAO and export only optionally (for
# calibration or the DeepStream label file), so they check whatever blocks are present.
_EVAL_BLOCKS = (
    "dataset_config",
    "augmentation_config",
    "model_config",
    "cost_function_config",
    "bbox_rasterizer_config",
    "postprocessing_config",
    "evaluation_config",
)
REQUIRED_BLOCKS = {
    "train": _EVAL_BLOCKS + ("training_config",),
    "evaluate": _EVAL_BLOCKS,
    "calibration_tensorfile": ("dataset_config", "augmentation_config", "training_config"),
    "inference": ("inferencer_config", "bbox_handler_config"),
}

_CLUSTERING_DEFAULTS = {"clustering_algorithm": "DBSCAN", "dbscan_confidence_threshold": 0.1, "nms_iou_threshold": 0.2}
# Defaults from the documentation's parameter tables, by dotted path ("*" = any map key).
DEFAULTS: dict[type[Message], dict[str, object]] = {
    DatasetExportConfig: {
        "kitti_config.image_extension": ".png",
        "kitti_config.num_partitions": 2,
        "kitti_config.val_split": 20.0,
        "kitti_config.num_shards": 10,
    },
    Experiment: {
        "model_config.arch": "resnet",
        "model_config.num_layers": 18,
        "model_config.all_projections": False,
        "model_config.use_pooling": False,
        "model_config.use_batch_norm": False,
        "model_config.dropout_rate": 0.0,
        "model_config.load_graph": False,
        "model_config.freeze_bn": False,
        "bbox_rasterizer_config.deadzone_radius": 0.67,
        **{
            f"postprocessing_config.target_class_config.*.clustering_config.{k}": v
            for k, v in _CLUSTERING_DEFAULTS.items()
        },
        "training_config.batch_size_per_gpu": 32,
        "training_config.num_epochs": 120,
        "training_config.enable_qat": False,
        "training_config.checkpoint_interval": 10.0,
        "augmentation_config.preprocessing.enable_auto_resize": False,
        "augmentation_config.spatial_augmentation.hflip_probability": 0.5,
        "augmentation_config.spatial_augmentation.vflip_probability": 0.0,
        "augmentation_config.spatial_augmentation.zoom_min": 1.0,
        "augmentation_config.spatial_augmentation.zoom_max": 1.0,
        "augmentation_config.spatial_augmentation.translate_max_x": 8.0,
        "augmentation_config.spatial_augmentation.translate_max_y": 8.0,
        "augmentation_config.spatial_augmentation.rotate_rad_max": 0.69,
        "augmentation_config.color_augmentation.color_shift_stddev": 0.0,
        "augmentation_config.color_augmentation.hue_rotation_max": 25.0,
        "augmentation_config.color_augmentation.saturation_shift_max": 0.2,
        "augmentation_config.color_augmentation.contrast_scale_max": 0.1,
        "augmentation_config.color_augmentation.contrast_center": 0.5,
        "evaluation_config.average_precision_mode": "SAMPLE",
        "evaluation_config.validation_period_during_training": 10,
        "evaluation_config.first_validation_epoch": 30,
        "evaluation_config.evaluation_box_config.*.minimum_height": 10.0,
        "evaluation_config.evaluation_box_config.*.minimum_width": 10.0,
        "evaluation_config.evaluation_box_config.*.maximum_height": 9999.0,
        "evaluation_config.evaluation_box_config.*.maximum_width": 9999.0,
    },
    Inference: {
        "inferencer_config.batch_size": 1,
        "inferencer_config.image_height": 384,
        "inferencer_config.image_width": 1248,
        "inferencer_config.image_channels": 3,
        "inferencer_config.gpu_index": 0,
        "inferencer_config.tensorrt_config.parser": "ETLT",
        "inferencer_config.tensorrt_config.backend_data_type": "FP32",
        "inferencer_config.tensorrt_config.save_engine": False,
        "bbox_handler_config.kitti_dump": False,
        "bbox_handler_config.disable_overlay": True,
        "bbox_handler_config.overlay_linewidth": 1,
        "bbox_handler_config.classwise_bbox_handler_config.*.confidence_model": "aggregate_cov",
        **{
            f"bbox_handler_config.classwise_bbox_handler_config.*.clustering_config.{k}": v
            for k, v in _CLUSTERING_DEFAULTS.items()
        },
    },
}


class DetectNetV2Spec:
    """The `SPEC` object the launcher and `tao spec` use (same methods as YamlSpec)."""

    network = NETWORK
    tasks = TASKS

    def message_class(self, task: str) -> type[Message]:
        if task not in TASKS:
            raise TaoUserError(f"{NETWORK} has no task '{task}'{did_you_mean(task, TASKS)}; tasks: {', '.join(TASKS)}")
        return TASKS[task]

    def load(
        self,
        task: str,
        path: str | os.PathLike | None = None,
        overrides: Sequence[str] = (),
        text: str | None = None,
        *,
        partial: bool = False,
    ) -> Message:
        """Parse, override and validate a spec (the template when neither path nor text is given)."""
        cls = self.message_class(task)
        source = str(path) if path is not None else None
        if text is None:
            text = textspec.read_text(path) if path is not None else self.template(task)
        msg = textspec.parse(text, cls, source)
        textspec.apply_overrides(msg, overrides, source)
        errors = [
            SpecError(e.path, e.value, e.expected, source) if e.source is None else e
            for e in self.validate(task, msg, partial=partial)
        ]
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise SpecErrors(errors)
        return msg

    def validate(self, task: str, msg: Message, *, partial: bool = False) -> list[SpecError]:
        """Every rule violation of `msg` for `task` (empty when valid)."""
        self.message_class(task)
        return rules.check(msg, REQUIRED_BLOCKS.get(task, ()), task, partial=partial)

    def template(self, task: str) -> str:
        """A complete spec for `task` assembled from the documentation's examples."""
        name = _TEMPLATES[self.message_class(task)]
        return resources.files("tao_core.proto.detectnet_v2").joinpath("templates", name).read_text(encoding="utf-8")

    def json_schema(self, task: str) -> dict:
        cls = self.message_class(task)
        schema = textspec.json_schema(cls.DESCRIPTOR, DEFAULTS[cls])
        schema["title"] = f"{NETWORK} {task} spec ({cls.DESCRIPTOR.full_name}, protobuf text)"
        return schema


SPEC = DetectNetV2Spec()
