"""DeepStream Gst-nvinfer configuration for every network: one generator, two file formats.

`NvInferConfig` holds the values; `write_deepstream_files` writes any of

- `nvinfer_config.txt`: the classic key file, a `[property]` group and a `[class-attrs-all]`
  group of `key=value` lines (lists joined with ';'),
- `nvdsinfer_config.yaml`: the same keys as YAML mappings `property:` / `class-attrs-all:`,
- `labels.txt`: one class name per line, in output order.

Only keys Gst-nvinfer documents are written (DOCUMENTED_KEYS, from the plugin's property
parser `gstnvinfer_property_parser.h` and the Gst-nvinfer guide); a test holds every key to it.

Preprocessing: nvinfer computes `y = net-scale-factor * (x - offsets)` per channel on 0..255
pixels. A torchvision-style `(x / 255 - mean) / std` maps to offsets = 255 * mean and
net-scale-factor = 1 / (255 * std). nvinfer takes ONE scale factor, so a per-channel std is
approximated by its mean (for ImageNet std (0.229, 0.224, 0.225): 0.226, at most 1.3% off per
channel); `scale_and_offsets` returns the largest relative error so callers can log it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_text

TXT_NAME = "nvinfer_config.txt"
YAML_NAME = "nvdsinfer_config.yaml"
LABELS_NAME = "labels.txt"

# Keys of the [property] group documented for Gst-nvinfer.
DOCUMENTED_PROPERTY_KEYS = frozenset(
    {
        # element
        "gie-unique-id", "process-mode", "interval", "labelfile-path", "gpu-id", "secondary-reinfer-interval",
        "output-tensor-meta", "enable-dla", "use-dla-core", "disable-output-host-copy", "auto-inc-mem",
        "max-gpu-mem-per", "dump-input-tensor", "dump-output-tensor",
        # runtime engine
        "batch-size", "tensor-meta-pool-size", "network-mode", "model-engine-file", "int8-calib-file",
        "workspace-size",
        # generic model
        "output-blob-names", "is-classifier", "network-type", "force-implicit-batch-dim", "infer-dims",
        "output-io-formats", "layer-device-precision",
        # preprocessing
        "model-color-format", "net-scale-factor", "offsets", "mean-file", "maintain-aspect-ratio",
        "symmetric-padding", "scaling-filter", "scaling-compute-hw", "network-input-order", "input-tensor-from-meta",
        # custom implementation
        "custom-lib-path", "parse-bbox-func-name", "parse-bbox-instance-mask-func-name", "engine-create-func-name",
        "parse-classifier-func-name", "custom-network-config", "parse-func",
        # model files
        "model-file", "proto-file", "uff-file", "uff-input-order", "input-dims", "uff-input-dims",
        "uff-input-blob-name", "tlt-encoded-model", "tlt-model-key", "onnx-file",
        # detector / classifier / segmentation
        "num-detected-classes", "enable-dbscan", "cluster-mode", "classifier-type", "classifier-threshold",
        "classifier-async-mode", "segmentation-threshold", "segmentation-output-order", "output-instance-mask",
        # secondary-mode filtering
        "input-object-min-width", "input-object-min-height", "input-object-max-width", "input-object-max-height",
        "operate-on-gie-id", "operate-on-class-ids", "filter-out-class-ids",
    }
)  # fmt: skip
# Keys of the [class-attrs-all] / [class-attrs-<id>] groups.
DOCUMENTED_CLASS_ATTR_KEYS = frozenset(
    {
        "threshold", "pre-cluster-threshold", "post-cluster-threshold", "eps", "group-threshold", "minBoxes",
        "dbscan-min-score", "roi-top-offset", "roi-bottom-offset", "detected-min-w", "detected-min-h",
        "detected-max-w", "detected-max-h", "border-color", "bg-color", "nms-iou-threshold", "topk",
    }
)  # fmt: skip
DOCUMENTED_KEYS = DOCUMENTED_PROPERTY_KEYS | DOCUMENTED_CLASS_ATTR_KEYS

NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer's network-mode
COLOR_FORMATS = {"rgb": 0, "bgr": 1, "gray": 2}  # model-color-format
NETWORK_TYPES = {"detector": 0, "classifier": 1, "segmentation": 2, "instance_segmentation": 3, "other": 100}
CLUSTER_MODES = {"groupRectangles": 0, "dbscan": 1, "nms": 2, "dbscan_nms": 3, "none": 4}

DETR_PARSER = "NvDsInferParseCustomDDETRTAO"
TAO_PARSER_LIB = "/opt/nvidia/deepstream/deepstream/lib/libnvds_infercustomparser_tao.so"


@dataclass
class NvInferConfig:
    """Values of one nvinfer config. `extra` / `class_attrs` may add more documented keys."""

    infer_dims: tuple[int, int, int]  # C, H, W
    output_blob_names: list[str]
    num_detected_classes: int
    onnx_file: str | None = None
    model_engine_file: str | None = None
    int8_calib_file: str | None = None
    labelfile_path: str = LABELS_NAME
    net_scale_factor: float = 1.0 / 255.0
    offsets: tuple[float, ...] = (0.0, 0.0, 0.0)
    model_color_format: str = "rgb"
    precision: str = "fp32"
    network_type: str = "detector"
    cluster_mode: str = "nms"
    batch_size: int = 1
    gie_unique_id: int = 1
    maintain_aspect_ratio: int = 0
    parse_bbox_func_name: str | None = None
    custom_lib_path: str | None = None
    extra: dict = field(default_factory=dict)
    class_attrs: dict = field(default_factory=lambda: {"pre-cluster-threshold": 0.5})

    def property_section(self) -> dict:
        _choice("precision", self.precision.lower(), NETWORK_MODES)
        _choice("model_color_format", self.model_color_format.lower(), COLOR_FORMATS)
        _choice("network_type", self.network_type, NETWORK_TYPES)
        _choice("cluster_mode", self.cluster_mode, CLUSTER_MODES)
        if len(self.infer_dims) != 3 or any(int(d) <= 0 for d in self.infer_dims):
            raise TaoUserError(f"infer_dims must be (C, H, W) with positive values, got {self.infer_dims}")
        if self.num_detected_classes <= 0:
            raise TaoUserError(f"num_detected_classes must be > 0, got {self.num_detected_classes}")
        if not (self.onnx_file or self.model_engine_file):
            raise TaoUserError("an nvinfer config needs onnx_file and/or model_engine_file")
        values = {
            "net-scale-factor": float(self.net_scale_factor),
            "offsets": [float(o) for o in self.offsets],
            "model-color-format": COLOR_FORMATS[self.model_color_format.lower()],
            "infer-dims": [int(d) for d in self.infer_dims],
            "onnx-file": self.onnx_file,
            "model-engine-file": self.model_engine_file,
            "int8-calib-file": self.int8_calib_file,
            "labelfile-path": self.labelfile_path,
            "batch-size": int(self.batch_size),
            "network-mode": NETWORK_MODES[self.precision.lower()],
            "network-type": NETWORK_TYPES[self.network_type],
            "num-detected-classes": int(self.num_detected_classes),
            "output-blob-names": list(self.output_blob_names),
            "cluster-mode": CLUSTER_MODES[self.cluster_mode],
            "gie-unique-id": int(self.gie_unique_id),
            "maintain-aspect-ratio": int(self.maintain_aspect_ratio),
            "parse-bbox-func-name": self.parse_bbox_func_name,
            "custom-lib-path": self.custom_lib_path,
            **self.extra,
        }
        section = {k: v for k, v in values.items() if v is not None}
        _check_keys(section, DOCUMENTED_PROPERTY_KEYS, "[property]")
        return section

    def class_attrs_section(self) -> dict:
        section = {k: v for k, v in self.class_attrs.items() if v is not None}
        _check_keys(section, DOCUMENTED_CLASS_ATTR_KEYS, "[class-attrs-all]")
        return section


def _choice(name, value, allowed) -> None:
    if value not in allowed:
        raise TaoUserError(f"{name} {value!r} is not one of {list(allowed)}")


def _check_keys(section: dict, documented: frozenset, group: str) -> None:
    unknown = sorted(set(section) - documented)
    if unknown:
        raise TaoUserError(f"{group}: {unknown} are not Gst-nvinfer keys (see tao_core.deepstream.DOCUMENTED_KEYS)")


def scale_and_offsets(mean, std, pixel_max: float = 255.0) -> tuple[float, list[float], float]:
    """(net-scale-factor, offsets, worst relative error of the single-scale approximation).

    `mean` / `std` are per-channel on the 0..1 scale (as in torchvision Normalize).
    """
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if not std or any(s <= 0 for s in std):
        raise TaoUserError(f"std must be positive, got {std}")
    avg = sum(std) / len(std)
    worst = max(abs(s - avg) / s for s in std)
    return 1.0 / (pixel_max * avg), [pixel_max * m for m in mean], worst


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return ";".join(_fmt(v) for v in value)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)  # shortest exact form: 0.00392156862745098
    return str(value)


def to_txt(cfg: NvInferConfig) -> str:
    lines = ["[property]"] + [f"{k}={_fmt(v)}" for k, v in cfg.property_section().items()]
    lines += ["", "[class-attrs-all]"] + [f"{k}={_fmt(v)}" for k, v in cfg.class_attrs_section().items()]
    return "\n".join(lines) + "\n"


def to_yaml(cfg: NvInferConfig) -> str:
    # Lists are joined with ';' as in the key file: nvinfer's YAML parser reads the same strings.
    def conv(section):
        return {k: _fmt(v) if isinstance(v, (list, tuple)) else v for k, v in section.items()}

    doc = {"property": conv(cfg.property_section()), "class-attrs-all": conv(cfg.class_attrs_section())}
    return yaml.safe_dump(doc, sort_keys=False)


def write_deepstream_files(
    out_dir: str | os.PathLike,
    cfg: NvInferConfig,
    class_names: list[str],
    formats: tuple[str, ...] = ("txt", "yaml"),
) -> dict[str, Path]:
    """Write the chosen config formats and labels.txt into `out_dir`; returns {kind: path}."""
    unknown = set(formats) - {"txt", "yaml"}
    if unknown or not formats:
        raise TaoUserError(f"DeepStream config formats must be 'txt' and/or 'yaml', got {list(formats)}")
    if len(class_names) != cfg.num_detected_classes:
        raise TaoUserError(
            f"{len(class_names)} class names for num_detected_classes={cfg.num_detected_classes}; they must match"
        )
    if any(not n or "\n" in n for n in class_names):
        raise TaoUserError(f"class names must be non-empty single lines, got {class_names}")
    out = Path(out_dir)
    written = {}
    # Render everything first so a bad value writes nothing.
    texts = {"txt": to_txt(cfg) if "txt" in formats else None, "yaml": to_yaml(cfg) if "yaml" in formats else None}
    for kind, name in (("txt", TXT_NAME), ("yaml", YAML_NAME)):
        if texts[kind] is not None:
            atomic_write_text(out / name, texts[kind])
            written[kind] = out / name
    atomic_write_text(out / cfg.labelfile_path, "\n".join(class_names) + "\n")
    written["labels"] = out / cfg.labelfile_path
    return written


# ---- per-family presets -------------------------------------------------------------------


def detr_config(
    num_classes: int,
    input_hw: tuple[int, int],
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    onnx_file: str | None = None,
    model_engine_file: str | None = None,
    precision: str = "fp32",
    topk: int = 20,
    pre_cluster_threshold: float = 0.5,
    **overrides,
) -> NvInferConfig:
    """DINO / Deformable DETR: TAO's DETR bbox parser, no clustering (the model already ranks)."""
    scale, offsets, _ = scale_and_offsets(mean, std)
    values = dict(
        infer_dims=(3, *input_hw),
        output_blob_names=["pred_logits", "pred_boxes"],
        num_detected_classes=num_classes,
        onnx_file=onnx_file,
        model_engine_file=model_engine_file,
        net_scale_factor=scale,
        offsets=tuple(offsets),
        model_color_format="rgb",
        precision=precision,
        cluster_mode="none",
        parse_bbox_func_name=DETR_PARSER,
        custom_lib_path=TAO_PARSER_LIB,
        class_attrs={"pre-cluster-threshold": pre_cluster_threshold, "topk": topk},
    )
    values.update(overrides)
    return NvInferConfig(**values)


def write_detr_deepstream_files(
    out_dir: str | os.PathLike,
    class_names: list[str],
    input_hw: tuple[int, int],
    mean,
    std,
    *,
    onnx_file: str | os.PathLike | None = None,
    model_engine_file: str | os.PathLike | None = None,
    int8_calib_file: str | os.PathLike | None = None,
    precision: str = "fp32",
    batch_size: int = 1,
    pre_cluster_threshold: float = 0.5,
) -> dict[str, Path]:
    """labels.txt + nvinfer_config.txt + nvdsinfer_config.yaml of a DINO / Deformable DETR model in
    `out_dir`, for what export (ONNX only) or gen_trt_engine (the engine it built) produced.

    File paths are written relative to `out_dir`, because nvinfer resolves relative paths from
    the config file's folder: the folder keeps working when moved together with its models.
    A 1-value mean / std (grey normalisation) is repeated per channel (one offset each)."""
    mean, std = list(mean), list(std)
    mean = mean * 3 if len(mean) == 1 else mean

    def rel(path):
        return None if path is None else os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))

    cfg = detr_config(
        len(class_names),
        tuple(input_hw),
        mean=mean,
        std=std,
        onnx_file=rel(onnx_file),
        model_engine_file=rel(model_engine_file),
        int8_calib_file=rel(int8_calib_file),
        precision=precision,
        batch_size=int(batch_size),
        pre_cluster_threshold=float(pre_cluster_threshold),
    )
    return write_deepstream_files(out_dir, cfg, class_names)


def detectnet_v2_config(
    num_classes: int,
    input_chw: tuple[int, int, int],
    onnx_file: str | None = None,
    model_engine_file: str | None = None,
    precision: str = "fp32",
    coverage_threshold: float = 0.005,
    dbscan_eps: float = 0.13,
    dbscan_min_samples: int = 1,
    **overrides,
) -> NvInferConfig:
    """DetectNet_v2: pixels / 255, no mean, nvinfer's built-in grid parser with DBSCAN clustering
    (the clustering TAO applies after training; defaults are TAO's default spec)."""
    values = dict(
        infer_dims=tuple(input_chw),
        output_blob_names=["output_cov/Sigmoid", "output_bbox/BiasAdd"],
        num_detected_classes=num_classes,
        onnx_file=onnx_file,
        model_engine_file=model_engine_file,
        net_scale_factor=1.0 / 255.0,
        offsets=(0.0,) * int(input_chw[0]),
        model_color_format="rgb" if input_chw[0] == 3 else "gray",
        precision=precision,
        cluster_mode="dbscan",
        class_attrs={"pre-cluster-threshold": coverage_threshold, "eps": dbscan_eps, "minBoxes": dbscan_min_samples},
    )
    values.update(overrides)
    return NvInferConfig(**values)
