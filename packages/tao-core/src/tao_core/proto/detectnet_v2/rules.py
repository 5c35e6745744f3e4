"""Validation rules of DetectNet_v2 specs (used by `tao_core.specs.detectnet_v2`).

Rules check values that are set; "must be set" checks (required blocks and fields) are skipped
with `partial=True`. Ranges and allowed values are the TAO DetectNet_v2 documentation's.
"""

from __future__ import annotations

from typing import Sequence

from google.protobuf.message import Message

from tao_core.errors import SpecError
from tao_core.proto.detectnet_v2.dataset_export_pb2 import DatasetExportConfig
from tao_core.proto.detectnet_v2.experiment_pb2 import Experiment
from tao_core.proto.detectnet_v2.inference_pb2 import Inference, TensorRTConfig
from tao_core.spec.validate import did_you_mean

STRIDE = 16  # the feature extractor's output stride: input sizes must be multiples of it
# Backbone templates of DetectNet_v2 -> allowed num_layers (empty: not checked).
ARCHS = {
    "resnet": (10, 18, 34, 50, 101),
    "vgg": (16, 19),
    "mobilenet_v1": (),
    "mobilenet_v2": (),
    "googlenet": (),
    "darknet": (),
    "squeezenet": (),
    "efficientnet_b0": (),
    "helnet": (),
}
# Block ids that freeze_blocks may name, per template (the documentation's table).
FREEZE_BLOCKS = {
    "resnet": range(0, 5),
    "vgg": range(1, 6),
    "mobilenet_v1": range(0, 12),
    "mobilenet_v2": range(0, 14),
    "googlenet": range(0, 8),
}
OBJECTIVES = ("cov", "bbox")
CONFIDENCE_MODELS = ("aggregate_cov", "mean_cov")
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")
PARTITION_MODES = ("random", "sequence")


def check(msg: Message, required_blocks: Sequence[str], task: str, *, partial: bool = False) -> list[SpecError]:
    """Every rule violation of `msg` (an Experiment, Inference or DatasetExportConfig)."""
    c = _Checks(partial)
    for block in required_blocks:
        if not msg.HasField(block):
            c.missing(block, None, f"a {block} {{ ... }} block (the {task} task reads it)")
    if isinstance(msg, Experiment):
        _experiment_rules(msg, c)
    elif isinstance(msg, Inference):
        _inference_rules(msg, c)
    else:
        _dataset_export_rules(msg, "", c)
    return c.errors


class _Checks:
    """Collects SpecErrors so that one pass reports every problem.

    `partial` skips the "must be set" checks (`missing`), for loading one block on its own.
    """

    def __init__(self, partial: bool = False):
        self.partial = partial
        self.errors: list[SpecError] = []

    def add(self, path: str, value, expected: str) -> None:
        self.errors.append(SpecError(path, value, expected))

    def missing(self, path: str, value, expected: str) -> None:
        if not self.partial:
            self.add(path, value, expected)

    def within(self, path: str, value: float, lo: float | None = None, hi: float | None = None) -> None:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            lo_s = "-inf" if lo is None else f"{lo:g}"
            hi_s = "inf" if hi is None else f"{hi:g}"
            self.add(path, _num(value), f"a value in [{lo_s}, {hi_s}]")

    def one_of(self, path: str, value, allowed: Sequence) -> None:
        if value not in allowed:
            self.add(path, value, f"one of {', '.join(map(str, allowed))}{did_you_mean(value, allowed)}")


def _num(value):
    """float32 fields read back as 0.30000001192...; show the user's 0.3."""
    return float(f"{value:.7g}") if isinstance(value, float) else value


def _experiment_rules(spec: Experiment, c: _Checks) -> None:
    if spec.HasField("augmentation_config"):
        _augmentation_rules(spec.augmentation_config, c)
    if spec.HasField("model_config"):
        _model_rules(spec.model_config, c)
    if spec.HasField("training_config"):
        _training_rules(spec.training_config, c)
    if spec.HasField("evaluation_config"):
        epochs = spec.training_config.num_epochs if spec.HasField("training_config") else 0
        _evaluation_rules(spec.evaluation_config, epochs, c)
    if spec.HasField("dataset_config"):
        _dataset_rules(spec.dataset_config, c)
    for i, export in enumerate(spec.dataset_export_config):
        _dataset_export_rules(export, f"dataset_export_config.{i}.", c)
    for name, tc in spec.postprocessing_config.target_class_config.items():
        if tc.HasField("clustering_config"):
            _clustering_rules(
                f"postprocessing_config.target_class_config.{name}.clustering_config", tc.clustering_config, c
            )
    r = spec.bbox_rasterizer_config
    c.within("bbox_rasterizer_config.deadzone_radius", r.deadzone_radius, 0, 1)
    for name, tc in r.target_class_config.items():
        for f in ("cov_center_x", "cov_center_y", "cov_radius_x", "cov_radius_y", "bbox_min_radius"):
            c.within(f"bbox_rasterizer_config.target_class_config.{name}.{f}", getattr(tc, f), 0, 1)
    _cost_function_rules(spec.cost_function_config, c)
    _class_consistency(spec, c)


def _class_consistency(spec: Experiment, c: _Checks) -> None:
    """The three per-class blocks must name the same classes; the dataset must feed them."""
    blocks = []
    if spec.HasField("cost_function_config"):
        blocks.append(
            ("cost_function_config.target_classes", [t.name for t in spec.cost_function_config.target_classes])
        )
    if spec.HasField("bbox_rasterizer_config"):
        blocks.append(
            ("bbox_rasterizer_config.target_class_config", list(spec.bbox_rasterizer_config.target_class_config))
        )
    if spec.HasField("postprocessing_config"):
        blocks.append(
            ("postprocessing_config.target_class_config", list(spec.postprocessing_config.target_class_config))
        )
    classes = sorted({name for _, names in blocks for name in names})
    for block, names in blocks:
        for name in classes:
            if name not in names:
                found = ", ".join(b for b, n in blocks if name in n)
                c.add(block, name, f"an entry for every target class: {name!r} is in {found} but missing here")
    mapping = spec.dataset_config.target_class_mapping
    if mapping:
        for name in classes:
            if name not in mapping.values():
                c.add(
                    "dataset_config.target_class_mapping",
                    name,
                    f"a mapping whose value is {name!r}, a target class (mapped to: "
                    f"{', '.join(sorted(set(mapping.values())))}); without one it gets no training data",
                )


def _augmentation_rules(a, c: _Checks) -> None:
    p, base = a.preprocessing, "augmentation_config.preprocessing"
    if a.HasField("preprocessing"):
        for f in ("output_image_width", "output_image_height"):
            v = getattr(p, f)
            if v == 0:
                c.missing(f"{base}.{f}", v, f"the network input size, a positive multiple of {STRIDE}")
            elif v % STRIDE:
                c.add(f"{base}.{f}", v, f"a positive multiple of {STRIDE} (the network's output stride)")
        if p.output_image_channel:
            c.one_of(f"{base}.output_image_channel", p.output_image_channel, (1, 3))
        else:
            c.missing(f"{base}.output_image_channel", 0, "1 or 3")
        for lo, hi in (("crop_left", "crop_right"), ("crop_top", "crop_bottom")):
            if getattr(p, hi) and getattr(p, lo) >= getattr(p, hi):
                c.add(f"{base}.{hi}", getattr(p, hi), f"greater than {lo} ({getattr(p, lo)})")
        for f in ("min_bbox_width", "min_bbox_height", "scale_width", "scale_height"):
            c.within(f"{base}.{f}", getattr(p, f), 0)
    s, base = a.spatial_augmentation, "augmentation_config.spatial_augmentation"
    for f in ("hflip_probability", "vflip_probability", "rotate_probability"):
        c.within(f"{base}.{f}", getattr(s, f), 0, 1)
    for f in ("zoom_min", "zoom_max", "translate_max_x", "translate_max_y", "rotate_rad_max"):
        c.within(f"{base}.{f}", getattr(s, f), 0)
    if s.zoom_max and s.zoom_min > s.zoom_max:
        c.add(f"{base}.zoom_min", _num(s.zoom_min), f"at most zoom_max ({_num(s.zoom_max)})")
    k, base = a.color_augmentation, "augmentation_config.color_augmentation"
    for f in ("color_shift_stddev", "saturation_shift_max", "contrast_scale_max", "contrast_center"):
        c.within(f"{base}.{f}", getattr(k, f), 0, 1)
    c.within(f"{base}.hue_rotation_max", k.hue_rotation_max, 0, 360)


def _model_rules(m, c: _Checks) -> None:
    if m.arch:
        c.one_of("model_config.arch", m.arch, tuple(ARCHS))
    arch = m.arch or "resnet"
    if m.num_layers and ARCHS.get(arch):
        c.one_of("model_config.num_layers", m.num_layers, ARCHS[arch])
    c.within("model_config.dropout_rate", m.dropout_rate, 0, 1)
    allowed = FREEZE_BLOCKS.get(arch)
    for i, block in enumerate(m.freeze_blocks):
        if block != int(block) or (allowed is not None and int(block) not in allowed):
            ids = f"{allowed.start}..{allowed.stop - 1}" if allowed is not None else "integers"
            c.add(f"model_config.freeze_blocks.{i}", _num(block), f"a block id of {arch}: {ids}")
    if m.objective_set.HasField("bbox") and m.objective_set.bbox.scale <= 0:
        c.add("model_config.objective_set.bbox.scale", _num(m.objective_set.bbox.scale), "a positive number (35.0)")


def _training_rules(t, c: _Checks) -> None:
    for f in ("batch_size_per_gpu", "num_epochs"):
        if getattr(t, f) == 0:  # uint32: zero is the only value below 1
            c.missing(f"training_config.{f}", 0, "a positive integer")
    c.within("training_config.checkpoint_interval", t.checkpoint_interval, 0, t.num_epochs or None)
    lr, base = t.learning_rate, "training_config.learning_rate"
    kind = lr.WhichOneof("learning_rate")
    if kind is not None:
        s = getattr(lr, kind)
        if s.min_learning_rate < 0 or s.max_learning_rate <= 0 or s.min_learning_rate > s.max_learning_rate:
            c.add(
                f"{base}.{kind}.max_learning_rate",
                _num(s.max_learning_rate),
                f"a positive rate >= min_learning_rate ({_num(s.min_learning_rate)})",
            )
    if kind == "soft_start_annealing_schedule":
        s = lr.soft_start_annealing_schedule
        c.within(f"{base}.{kind}.soft_start", s.soft_start, 0, 1)
        c.within(f"{base}.{kind}.annealing", s.annealing, 0, 1)
        if s.annealing <= s.soft_start:
            c.add(f"{base}.{kind}.annealing", _num(s.annealing), f"greater than soft_start ({_num(s.soft_start)})")
    c.within("training_config.regularizer.weight", t.regularizer.weight, 0)
    if t.optimizer.HasField("adam"):
        adam = t.optimizer.adam
        c.within("training_config.optimizer.adam.beta1", adam.beta1, 0, 1)
        c.within("training_config.optimizer.adam.beta2", adam.beta2, 0, 1)
        c.within("training_config.optimizer.adam.epsilon", adam.epsilon, 0)
    for name, v in t.visualizer.target_class_config.items():
        c.within(
            f"training_config.visualizer.target_class_config.{name}.coverage_threshold", v.coverage_threshold, 0, 1
        )


def _evaluation_rules(e, num_epochs: int, c: _Checks) -> None:
    for f in ("validation_period_during_training", "first_validation_epoch"):
        v = getattr(e, f)
        if num_epochs and v > num_epochs:
            c.add(f"evaluation_config.{f}", v, f"at most training_config.num_epochs ({num_epochs})")
    for name, v in e.minimum_detection_ground_truth_overlap.items():
        c.within(f"evaluation_config.minimum_detection_ground_truth_overlap.{name}", v, 0, 1)
    for name, box in e.evaluation_box_config.items():
        base = f"evaluation_config.evaluation_box_config.{name}"
        for lo, hi in (("minimum_height", "maximum_height"), ("minimum_width", "maximum_width")):
            c.within(f"{base}.{lo}", getattr(box, lo), 0)
            if getattr(box, hi) and getattr(box, hi) < getattr(box, lo):
                c.add(f"{base}.{hi}", _num(getattr(box, hi)), f"at least {lo} ({_num(getattr(box, lo))})")


def _cost_function_rules(cf, c: _Checks) -> None:
    seen = set()
    for i, tc in enumerate(cf.target_classes):
        base = f"cost_function_config.target_classes.{i}"
        if not tc.name or tc.name in seen:
            c.add(f"{base}.name", tc.name, "a non-empty class name, unique among target_classes")
        seen.add(tc.name)
        c.within(f"{base}.class_weight", tc.class_weight, 0)
        c.within(f"{base}.coverage_foreground_weight", tc.coverage_foreground_weight, 0, 1)
        for j, obj in enumerate(tc.objectives):
            c.one_of(f"{base}.objectives.{j}.name", obj.name, OBJECTIVES)
            c.within(f"{base}.objectives.{j}.initial_weight", obj.initial_weight, 0)
            c.within(f"{base}.objectives.{j}.weight_target", obj.weight_target, 0)
    c.within("cost_function_config.min_objective_weight", cf.min_objective_weight, 0, 1)
    c.within("cost_function_config.max_objective_weight", cf.max_objective_weight, 0, 1)
    if cf.max_objective_weight and cf.min_objective_weight > cf.max_objective_weight:
        c.add(
            "cost_function_config.min_objective_weight",
            _num(cf.min_objective_weight),
            f"at most max_objective_weight ({_num(cf.max_objective_weight)})",
        )


def _clustering_rules(base: str, cc, c: _Checks) -> None:
    for f in (
        "coverage_threshold",
        "dbscan_eps",
        "dbscan_min_samples",
        "nms_iou_threshold",
        "nms_confidence_threshold",
    ):
        c.within(f"{base}.{f}", getattr(cc, f), 0, 1)
    for f in ("dbscan_confidence_threshold", "minimum_bounding_box_height", "neighborhood_size"):
        c.within(f"{base}.{f}", getattr(cc, f), 0)


def _image_extension(path: str, value: str, c: _Checks) -> None:
    if value and value.lower().lstrip(".") not in IMAGE_EXTENSIONS:
        c.add(path, value, "one of .png, .jpg, .jpeg")


def _dataset_rules(d, c: _Checks) -> None:
    if not d.data_sources:
        c.missing("dataset_config.data_sources", [], "at least one data_sources { tfrecords_path: ... } entry")
    for i, src in enumerate(d.data_sources):
        if not src.tfrecords_path:
            c.missing(f"dataset_config.data_sources.{i}.tfrecords_path", "", "a TFRecords path or glob pattern")
    if d.HasField("validation_data_source") and not d.validation_data_source.tfrecords_path:
        c.add("dataset_config.validation_data_source.tfrecords_path", "", "a TFRecords path or glob pattern")
    _image_extension("dataset_config.image_extension", d.image_extension, c)
    for key in d.target_class_mapping:
        if key != key.lower():
            c.add(
                "dataset_config.target_class_mapping",
                key,
                f"lower-case source class names ({key.lower()!r}): dataset_convert lower-cases them",
            )


def _dataset_export_rules(d: DatasetExportConfig, prefix: str, c: _Checks) -> None:
    kind = d.WhichOneof("convert_config_type")
    if kind is None:
        c.missing(prefix.rstrip(".") or "<top level>", None, "a kitti_config { ... } or coco_config { ... } block")
    elif kind == "kitti_config":
        k, base = d.kitti_config, f"{prefix}kitti_config"
        if not k.root_directory_path:
            c.missing(f"{base}.root_directory_path", "", "the dataset root directory")
        if k.partition_mode:
            c.one_of(f"{base}.partition_mode", k.partition_mode, PARTITION_MODES)
        if k.partition_mode == "random" and k.num_partitions not in (0, 2):
            c.add(f"{base}.num_partitions", k.num_partitions, "2 in random partition mode (train and val)")
        c.within(f"{base}.val_split", k.val_split, 0, 100)
        if k.num_shards:
            c.within(f"{base}.num_shards", k.num_shards, 1, 20)
        _image_extension(f"{base}.image_extension", k.image_extension, c)
    else:
        k, base = d.coco_config, f"{prefix}coco_config"
        if not k.root_directory_path:
            c.missing(f"{base}.root_directory_path", "", "the dataset root directory")
        if not k.img_dir_names or len(k.img_dir_names) != len(k.annotation_files):
            c.add(f"{base}.annotation_files", list(k.annotation_files), "one annotation file per img_dir_names entry")
        if k.num_shards and len(k.num_shards) != len(k.img_dir_names):
            c.add(f"{base}.num_shards", list(k.num_shards), "one shard count per img_dir_names entry")


def _inference_rules(spec: Inference, c: _Checks) -> None:
    ic, base = spec.inferencer_config, "inferencer_config"
    if spec.HasField("inferencer_config"):
        if ic.WhichOneof("model_config_type") is None:
            c.missing(base, None, "a tlt_config { model: ... } or tensorrt_config { ... } block")
        if not ic.target_classes:
            c.missing(f"{base}.target_classes", [], "the network's class names, in output order")
        elif len(set(ic.target_classes)) != len(ic.target_classes):
            c.add(
                f"{base}.target_classes",
                list(ic.target_classes),
                "the network's class names, each once, in output order",
            )
        for f in ("image_width", "image_height"):
            v = getattr(ic, f)
            if v < 0 or v % STRIDE:
                c.add(f"{base}.{f}", v, f"a positive multiple of {STRIDE} (the network's output stride)")
        if ic.image_channels:
            c.one_of(f"{base}.image_channels", ic.image_channels, (1, 3))
        c.within(f"{base}.batch_size", ic.batch_size, 0)
        c.within(f"{base}.gpu_index", ic.gpu_index, 0)
        if ic.HasField("tlt_config") and not ic.tlt_config.model:
            c.missing(f"{base}.tlt_config.model", "", "the path to the .tlt model")
        trt = ic.tensorrt_config
        if ic.HasField("tensorrt_config"):
            if trt.parser == TensorRTConfig.ETLT and not (trt.etlt_model or trt.trt_engine):
                c.missing(f"{base}.tensorrt_config.etlt_model", "", "the .etlt model path (or an existing trt_engine)")
            if trt.backend_data_type == TensorRTConfig.INT8 and not trt.calibrator_config.calibration_cache:
                c.missing(
                    f"{base}.tensorrt_config.calibrator_config.calibration_cache",
                    "",
                    "the calibration cache written by export (required for INT8)",
                )
    bh, base = spec.bbox_handler_config, "bbox_handler_config"
    c.within(f"{base}.overlay_linewidth", bh.overlay_linewidth, 0)
    classwise = bh.classwise_bbox_handler_config
    for name, cfg in classwise.items():
        path = f"{base}.classwise_bbox_handler_config.{name}"
        if cfg.confidence_model:
            c.one_of(f"{path}.confidence_model", cfg.confidence_model, CONFIDENCE_MODELS)
        for f in ("R", "G", "B"):
            c.within(f"{path}.bbox_color.{f}", getattr(cfg.bbox_color, f), 0, 255)
        if cfg.HasField("clustering_config"):
            _clustering_rules(f"{path}.clustering_config", cfg.clustering_config, c)
    if spec.HasField("bbox_handler_config") and ic.target_classes:
        allowed = list(ic.target_classes) + ["default"]
        for name in classwise:
            if name not in allowed:
                c.add(
                    f"{base}.classwise_bbox_handler_config",
                    name,
                    f"a class of inferencer_config.target_classes or 'default'{did_you_mean(name, allowed)}",
                )
        if "default" not in classwise:
            for name in ic.target_classes:
                if name not in classwise:
                    c.add(
                        f"{base}.classwise_bbox_handler_config",
                        name,
                        f"an entry for every target class (missing {name!r}), or a 'default' entry",
                    )
