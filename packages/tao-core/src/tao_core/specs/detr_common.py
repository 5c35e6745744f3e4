"""Spec sections that DINO and Deformable DETR share (their TAO 5.2 tables are identical here).

Defaults are the Default column of the DINO / Deformable DETR tables; where the two networks
differ (epochs, learning rates, schedule steps) the network module re-declares just that field
with `redefault`, keeping this module's description and bounds. Fields the tables omit but
TAO's dataclasses have (gpu_ids, seed, pin_memory, eval_class_ids, per-task results_dir, ...)
use TAO's runtime defaults.

The cross-field rules both networks obey are in `check_detr_rules`; each network adds its own.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from tao_core.errors import SpecError
from tao_core.spec.fields import spec_field
from tao_core.specs import rules
from tao_core.specs.common import GenTrtEngineConfig, TrtConfig, check_trt_rules

# The combinations the tables list; index 4 means "one extra stride-2 level on top of the backbone".
RETURN_INTERM_INDICES = [[0, 1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3], [1, 2], [1]]
TRAIN_SAMPLERS = ["default_sampler", "non_uniform_sampler", "uniform_sampler"]
DATASET_TYPES = ["serialized", "default"]
OPTIMIZERS = ["AdamW", "SGD"]
LR_SCHEDULERS = ["MultiStep", "StepLR"]
MONITORS = ["val_loss", "train_loss"]
PRECISIONS = ["fp32", "fp16"]
DISTRIBUTED_STRATEGIES = ["ddp", "ddp_sharded"]
# fixed_random_crop (large-scale jitter) output must tile the backbone's stride-32 feature map.
CROP_MULTIPLE = 32


def redefault(cls: type, name: str, default: Any, **changes):
    """Field `name` of spec dataclass `cls` with another default (same description and bounds,
    unless `changes` replaces some, e.g. options=...).

    For a subclass whose network documents a different default:
        lr: float = redefault(OptimConfig, "lr", 2e-4)
    """
    meta = dict(cls.__dataclass_fields__[name].metadata)
    meta.update(changes)
    return spec_field(default, **meta)


# ----------------------------------------------------------------------------- model


@dataclass
class DetrModelConfig:
    """Fields both model tables have; defaults are DINO's, Deformable DETR re-declares some."""

    pretrained_backbone_path: Optional[str] = spec_field(None, "Backbone weights to start from (backbone only).")
    # Not in the tables, but both TAO examples put the backbone weights under this name; it is
    # settled into pretrained_backbone_path by the rules (full-model weights: train.pretrained_model_path).
    pretrained_model_path: Optional[str] = spec_field(
        None, "Same as pretrained_backbone_path (the name TAO's examples use)."
    )
    backbone: str = spec_field("resnet_50", "Backbone network.", options=["resnet_50"])
    train_backbone: bool = spec_field(True, "Train the backbone; False freezes it.")
    num_feature_levels: int = spec_field(4, "Number of multi-scale feature levels.", options=[1, 2, 3, 4, 5])
    return_interm_indices: List[int] = spec_field(
        [1, 2, 3, 4],
        f"Backbone levels used, one per feature level (4 = extra stride-2 level); one of {RETURN_INTERM_INDICES}.",
        item_options=[0, 1, 2, 3, 4],
    )
    dec_layers: int = spec_field(6, "Transformer decoder layers.", gt=0)
    enc_layers: int = spec_field(6, "Transformer encoder layers.", gt=0)
    num_queries: int = spec_field(900, "Number of object queries.", gt=0)
    dim_feedforward: int = spec_field(2048, "Hidden size of the transformer feed-forward layers.", gt=0)
    num_select: int = spec_field(300, "Top-k predictions kept by post-processing.", gt=0)
    # TAO dataclass fields the tables leave out; the builder needs them.
    hidden_dim: int = spec_field(256, "Transformer width (a multiple of 32 and of nheads).", gt=0)
    nheads: int = spec_field(8, "Attention heads.", gt=0)
    enc_n_points: int = spec_field(4, "Sampling points per head and level in encoder deformable attention.", gt=0)
    dec_n_points: int = spec_field(4, "Sampling points per head and level in decoder deformable attention.", gt=0)
    dropout_ratio: float = spec_field(0.0, "Dropout probability in the transformer.", ge=0, le=1)
    cls_loss_coef: float = spec_field(2.0, "Weight of the classification cost/loss.", gt=0)
    bbox_loss_coef: float = spec_field(5.0, "Weight of the L1 box cost/loss.", gt=0)
    giou_loss_coef: float = spec_field(2.0, "Weight of the GIoU cost/loss.", gt=0)
    focal_alpha: float = spec_field(0.25, "Alpha of the focal loss.", gt=0)
    aux_loss: bool = spec_field(True, "Add the loss of every decoder layer.")


# ----------------------------------------------------------------------------- dataset


@dataclass
class DataSource:
    image_dir: Optional[str] = spec_field(None, "Directory of the images.")
    json_file: Optional[str] = spec_field(
        None, "COCO annotation file (.json), or a glob/prefix without extension for sharded JSON files."
    )


@dataclass
class InferDataSource:
    # TAO declares a list of directories, but its own example writes one directory as a plain
    # string; both load, and the rules turn a string into a one-element list.
    image_dir: Any = spec_field([], "Image directory, or a list of directories, to run inference on.")
    classmap: Optional[str] = spec_field(None, "Text file with one class name per line (line i = class id i + 1).")


@dataclass
class AugmentationConfig:
    scales: List[int] = spec_field(
        [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800],
        "Shorter-side sizes picked at random when resizing training images.",
        item_gt=0,
    )
    input_mean: List[float] = spec_field([0.485, 0.456, 0.406], "Per-channel mean for (x - mean) / std (1 or 3 values).")
    input_std: List[float] = spec_field(
        [0.229, 0.224, 0.225], "Per-channel std for (x - mean) / std (1 or 3 values).", item_gt=0
    )
    horizontal_flip_prob: float = spec_field(0.5, "Probability of a horizontal flip in training.", ge=0, le=1)
    train_random_resize: List[int] = spec_field(
        [400, 500, 600], "Sizes of the resize that precedes the random crop in training.", item_gt=0
    )
    train_random_crop_min: int = spec_field(384, "Smallest random crop side in training.", gt=0)
    train_random_crop_max: int = spec_field(600, "Largest random crop side in training.", gt=0)
    random_resize_max_size: int = spec_field(1333, "Longest side allowed after the training resize.", gt=0)
    test_random_resize: int = spec_field(800, "Shorter-side size of validation/test images.", gt=0)
    fixed_padding: bool = spec_field(
        True, "Pad every image to one fixed size so batch shapes stay constant (avoids CPU memory growth)."
    )
    fixed_random_crop: Optional[int] = spec_field(
        None, "Large-scale jittering to a square of this side (ViT backbones); a multiple of 32.", gt=0
    )


@dataclass
class DatasetConfig:
    train_data_sources: List[DataSource] = spec_field([], "Training sources: list of {image_dir, json_file}.")
    val_data_sources: List[DataSource] = spec_field([], "Validation sources: list of {image_dir, json_file}.")
    test_data_sources: Optional[DataSource] = spec_field(None, "Evaluation source: {image_dir, json_file}.")
    infer_data_sources: Optional[InferDataSource] = spec_field(None, "Inference source: {image_dir, classmap}.")
    num_classes: int = spec_field(91, "Number of class logits: max COCO category_id + 1 (0 is background).", gt=0)
    batch_size: int = spec_field(4, "Batch size per GPU for training and validation.", gt=0)
    # The table says > 0; 0 (load in the main process) is kept legal for debugging and small machines.
    workers: int = spec_field(8, "Data-loading worker processes per GPU (0 = main process).", ge=0)
    train_sampler: str = spec_field(
        "default_sampler", "Minibatch sampler (only read when dataset_type is default).", options=TRAIN_SAMPLERS
    )
    dataset_type: str = spec_field(
        "serialized",
        "serialized: annotations shared across workers (low RAM); default: each worker loads its own copy.",
        options=DATASET_TYPES,
    )
    pin_memory: bool = spec_field(True, "Pin host memory of loaded batches.")
    eval_class_ids: Optional[List[int]] = spec_field(
        None, "Category ids the COCO evaluation is restricted to (all when null).", item_gt=0
    )
    augmentation: AugmentationConfig = spec_field(AugmentationConfig, "Training and test transforms.")


# ----------------------------------------------------------------------------- train


@dataclass
class OptimConfig:
    """Optimizer and schedule; defaults are DINO's table, Deformable DETR re-declares four."""

    optimizer: str = spec_field("AdamW", "Optimizer.", options=OPTIMIZERS)
    monitor_name: str = spec_field("val_loss", "Metric monitored by the scheduler (same as lr_monitor).", options=MONITORS)
    lr: float = spec_field(1e-4, "Learning rate of everything but the backbone.", gt=0)
    lr_backbone: float = spec_field(1e-5, "Learning rate of the backbone.", gt=0)
    lr_linear_proj_mult: float = spec_field(
        0.1, "Multiplier of lr for the deformable attention's sampling-offset / reference-point layers.", gt=0
    )
    momentum: float = spec_field(0.9, "Momentum (SGD) / beta1 (AdamW).", gt=0)
    weight_decay: float = spec_field(1e-4, "Weight decay.", gt=0)
    lr_scheduler: str = spec_field(
        "MultiStep", "MultiStep: decay at each epoch of lr_steps; StepLR: decay every lr_step_size epochs.",
        options=LR_SCHEDULERS,
    )
    lr_steps: List[int] = spec_field([11], "Epochs at which MultiStep multiplies the lr by lr_decay.", item_gt=0)
    lr_step_size: int = spec_field(11, "Epoch period of StepLR.", gt=0)
    lr_decay: float = spec_field(0.1, "Factor applied to the lr at each scheduler step.", gt=0)
    lr_monitor: str = spec_field("val_loss", "Metric monitored by the scheduler (the table's name).", options=MONITORS)


@dataclass
class TrainConfig:
    """Training loop; defaults are DINO's table (num_epochs 12), Deformable DETR re-declares."""

    num_gpus: int = spec_field(1, "Number of GPUs per node.", gt=0)
    gpu_ids: List[int] = spec_field([0], "Indices of the GPUs to use.", item_ge=0)
    num_nodes: int = spec_field(1, "Number of nodes; more than 1 enables multi-node training.", gt=0)
    seed: int = spec_field(1234, "Random seed of python, numpy and torch.", ge=0)
    num_epochs: int = spec_field(12, "Number of training epochs.", gt=0)
    checkpoint_interval: int = spec_field(1, "Save a checkpoint every this many epochs.", gt=0)
    validation_interval: int = spec_field(1, "Validate every this many epochs.", gt=0)
    clip_grad_norm: float = spec_field(0.1, "Clip gradients to this L2 norm; 0 disables clipping.", ge=0)
    precision: str = spec_field("fp32", "Training precision; fp16 = automatic mixed precision.", options=PRECISIONS)
    distributed_strategy: str = spec_field(
        "ddp", "Multi-GPU strategy: ddp, or ddp_sharded (optimizer state sharded).", options=DISTRIBUTED_STRATEGIES
    )
    activation_checkpoint: bool = spec_field(True, "Recompute activations in the backward pass to save GPU memory.")
    pretrained_model_path: Optional[str] = spec_field(None, "Full-model checkpoint to fine-tune from.")
    resume_training_checkpoint_path: Optional[str] = spec_field(None, "Training checkpoint to resume from.")
    freeze: List[str] = spec_field([], "Module names to freeze, e.g. ['backbone', 'transformer.encoder'].")
    verbose: bool = spec_field(False, "Log the per-parameter learning-rate scaling.")
    results_dir: Optional[str] = spec_field(None, "Output directory of training (default <results_dir>/train).")
    optim: OptimConfig = spec_field(OptimConfig, "Optimizer and learning-rate schedule.")


# ----------------------------------------------------------------------------- evaluate / inference / export


@dataclass
class _RunConfig:
    """What evaluate and inference share: which model, where, and on which GPUs."""

    num_gpus: int = spec_field(1, "Number of GPUs.", gt=0)
    gpu_ids: List[int] = spec_field([0], "Indices of the GPUs to use.", item_ge=0)
    num_nodes: int = spec_field(1, "Number of nodes.", gt=0)
    checkpoint: Optional[str] = spec_field(None, "PyTorch model (.pth/.tlt) to run.")
    trt_engine: Optional[str] = spec_field(None, "TensorRT engine to run instead (tao deploy only).")
    results_dir: Optional[str] = spec_field(None, "Output directory (default <results_dir>/<task>).")
    batch_size: int = spec_field(-1, "Batch size; -1 uses dataset.batch_size.", ge=-1)
    input_width: Optional[int] = spec_field(
        None, "Resize inputs to this fixed width (e.g. to match an engine); null keeps the aspect ratio.", gt=0
    )
    input_height: Optional[int] = spec_field(None, "Resize inputs to this fixed height; null keeps the aspect ratio.", gt=0)


@dataclass
class EvaluateConfig(_RunConfig):
    conf_threshold: float = spec_field(0.0, "Drop predictions scoring below this before COCO evaluation.", ge=0, le=1)


@dataclass
class InferenceConfig(_RunConfig):
    conf_threshold: float = spec_field(0.5, "Keep predictions scoring at least this.", ge=0, le=1)
    color_map: Dict[str, str] = spec_field({}, "Box colour per class name, e.g. {person: red}.")
    outline_width: int = spec_field(3, "Box outline width in pixels.", gt=0)
    is_internal: bool = spec_field(False, "Write outputs per sequence sub-directory.")


@dataclass
class ExportConfig:
    results_dir: Optional[str] = spec_field(None, "Output directory (default <results_dir>/export).")
    gpu_id: int = spec_field(0, "GPU used for export.", ge=0)
    checkpoint: Optional[str] = spec_field(None, "PyTorch model (.pth/.tlt) to export.")
    onnx_file: Optional[str] = spec_field(None, "Path of the .onnx file to write.")
    on_cpu: bool = spec_field(
        True,
        "Export on CPU: deformable attention becomes standard ONNX ops; False keeps the TensorRT plugin node.",
    )
    input_channel: int = spec_field(3, "Input channels; only 3 is supported.", options=[3])
    input_width: int = spec_field(960, "Input width of the exported model.", gt=0)
    input_height: int = spec_field(544, "Input height of the exported model.", gt=0)
    # The 5.2 table says 12, but TAO's dataclass (and its CPU export, which needs GridSample
    # from opset 16) uses 17.
    opset_version: int = spec_field(17, "ONNX opset version.", gt=0)
    batch_size: int = spec_field(-1, "Batch size of the ONNX model; -1 = dynamic.", ge=-1)
    verbose: bool = spec_field(False, "Verbose export log.")
    serialize_nvdsinfer: bool = spec_field(False, "Also write a DeepStream nvdsinfer config and labels.txt.")


# ----------------------------------------------------------------------------- gen_trt_engine

@dataclass
class DetrTrtConfig(TrtConfig):
    # Each network's spec re-declares the default with the set its sensitivity sweep measured
    # (tao-deploy README, "INT8 accuracy"); a pattern matching no node of a graph does nothing.
    int8_keep_float: List[str] = spec_field(
        [],
        "tao-oss extension: layers an INT8 engine keeps in float, as 'op:<OpType>' or regular expressions "
        "searched in ONNX node names (they follow the PyTorch module paths); [] quantizes every "
        "Conv / MatMul / Gemm.",
    )


@dataclass
class DetrGenTrtEngineConfig(GenTrtEngineConfig):
    tensorrt: DetrTrtConfig = spec_field(DetrTrtConfig, "Precision, workspace and optimization profile.")


# ----------------------------------------------------------------------------- convert


@dataclass
class ConvertConfig:
    """`convert`: KITTI folders -> sharded COCO JSON (a flat spec, no sections)."""

    input_source: Optional[str] = spec_field(None, "Text file listing the sequence directories, one per line.")
    data_root: Optional[str] = spec_field(None, "Root the input_source entries are relative to.")
    results_dir: Optional[str] = spec_field(None, "Output directory of the sharded JSON files.")
    image_dir_name: Optional[str] = spec_field(None, "Image directory inside each sequence.")
    label_dir_name: Optional[str] = spec_field(None, "KITTI label directory inside each sequence.")
    val_split: float = spec_field(0.0, "Fraction of frames put in the validation partition (random mode).", ge=0, le=1)
    num_shards: int = spec_field(32, "Shards per partition.", gt=0)
    num_partitions: int = spec_field(1, "Number of partitions.", gt=0)
    partition_mode: Optional[str] = spec_field(None, "null: one partition; random: val/train split.", options=["random"])
    image_extension: str = spec_field(".jpg", "Extension of the image files.")
    mapping_path: Optional[str] = spec_field(None, "JSON mapping of KITTI class names to target class names.")


# ----------------------------------------------------------------------------- experiment


@dataclass
class DetrExperimentConfig:
    """Top-level sections; each network re-declares `model` and `train` with its own classes."""

    model: DetrModelConfig = spec_field(DetrModelConfig, "Model architecture.")
    dataset: DatasetConfig = spec_field(DatasetConfig, "Data sources, batching and augmentation.")
    train: TrainConfig = spec_field(TrainConfig, "Training task.")
    evaluate: EvaluateConfig = spec_field(EvaluateConfig, "Evaluation task.")
    inference: InferenceConfig = spec_field(InferenceConfig, "Inference task.")
    export: ExportConfig = spec_field(ExportConfig, "ONNX export task.")
    gen_trt_engine: DetrGenTrtEngineConfig = spec_field(DetrGenTrtEngineConfig, "TensorRT engine build (tao deploy).")
    encryption_key: Optional[str] = spec_field(None, "Key to encrypt/decrypt model files.")
    results_dir: Optional[str] = spec_field(None, "Root directory of the experiment's outputs.")


# ----------------------------------------------------------------------------- rules

# The sections that carry num_gpus / gpu_ids.
GPU_SECTIONS = ("train", "evaluate", "inference")


def check_convert_rules(cfg) -> list:
    errs = []
    for name, what in (
        ("input_source", "the .txt file listing the sequences to convert"),
        ("results_dir", "the directory the sharded JSON files are written to"),
        ("image_dir_name", "the image directory name inside each sequence, e.g. images"),
        ("label_dir_name", "the label directory name inside each sequence, e.g. labels"),
    ):
        errs += rules.require(cfg[name], name, f"a value: convert needs {what}")
    if cfg.partition_mode == "random" and cfg.num_partitions != 2:
        errs.append(SpecError("num_partitions", cfg.num_partitions, "2 when partition_mode is random (val + train)"))
    return errs


def _given(section) -> bool:
    """An optional source section counts as given when any of its fields is set (a template
    written with every field null means 'not given')."""
    return section is not None and any(rules.is_set(section[k]) for k in section)


def _sources_complete(sources, path: str, keys=("image_dir", "json_file")) -> list:
    """Every source of a list section (or the single source of a dict section) names its files."""
    errs = []
    single = not isinstance(rules.plain(sources), list)
    for i, src in enumerate([sources] if single else sources or []):
        where = path if single else f"{path}[{i}]"
        for key in keys:
            errs += rules.require(src[key], f"{where}.{key}", f"a value: every data source needs {key}")
    return errs


def _normalise_infer_source(ds) -> list:
    """infer_data_sources.image_dir: a string or a list of strings; stored as a list."""
    src = ds.infer_data_sources
    if src is None:
        return []
    path = "dataset.infer_data_sources.image_dir"
    value = rules.plain(src.image_dir)
    if isinstance(value, str):
        src.image_dir = [value]
    elif not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return [SpecError(path, value, "a directory path or a list of directory paths")]
    return []


def check_task_requirements(cfg, task: str, network_title: str) -> list:
    """What each task must be given before it starts (so it fails now, not after model build)."""
    ds = cfg.dataset
    errs = []
    if task == "train":
        errs += rules.require(
            ds.train_data_sources, "dataset.train_data_sources", "at least one {image_dir, json_file} to train on"
        )
        # Seed 003: training always builds a validation loader, and without val_data_sources TAO
        # dies with FileNotFoundError at start-up; say so now, with the fix.
        errs += rules.require(
            ds.val_data_sources,
            "dataset.val_data_sources",
            f"at least one {{image_dir, json_file}}: {network_title} always validates during training; "
            "if you have no separate validation split, reuse the train_data_sources entry",
        )
        errs += _sources_complete(ds.train_data_sources, "dataset.train_data_sources")
        errs += _sources_complete(ds.val_data_sources, "dataset.val_data_sources")
    elif task == "evaluate":
        errs += _require_model(cfg.evaluate, "evaluate")
        # TAO evaluates on test_data_sources; a spec with only val_data_sources is accepted and
        # the evaluate task falls back to it (the usual "evaluate the validation split" case).
        if _given(ds.test_data_sources):
            errs += _sources_complete(ds.test_data_sources, "dataset.test_data_sources")
        elif not ds.val_data_sources:
            errs.append(
                SpecError("dataset.test_data_sources", None, "{image_dir, json_file} of the data to evaluate on")
            )
    elif task == "inference":
        errs += _require_model(cfg.inference, "inference")
        src = ds.infer_data_sources
        if not _given(src):
            errs.append(SpecError("dataset.infer_data_sources", None, "{image_dir, classmap} of the images to run on"))
        else:
            errs += rules.require(src.image_dir, "dataset.infer_data_sources.image_dir", "the image directory (or list)")
            errs += rules.require(
                src.classmap, "dataset.infer_data_sources.classmap", "a text file of class names, one per line"
            )
    elif task == "export":
        errs += rules.require(
            cfg.export.checkpoint, "export.checkpoint", "the trained model to export (export.checkpoint=/path/model.pth)"
        )
    elif task == "gen_trt_engine":
        errs += rules.require(
            cfg.gen_trt_engine.onnx_file, "gen_trt_engine.onnx_file", "the exported .onnx file to build the engine from"
        )
        errs += check_trt_rules(cfg.gen_trt_engine)
    return errs


def _require_model(section, name: str) -> list:
    if rules.is_set(section.checkpoint) or rules.is_set(section.trt_engine):
        return []
    return [SpecError(f"{name}.checkpoint", None, f"the model to run ({name}.checkpoint=/path/model.pth)")]


def check_detr_rules(cfg, task: str, network_title: str) -> list:
    """Rules DINO and Deformable DETR share; `cfg` is a merged ExperimentConfig."""
    model, ds, aug = cfg.model, cfg.dataset, cfg.dataset.augmentation
    errs = []

    # Model shape: every task builds the same model, so these apply to all of them.
    errs += rules.reconcile_alias(model, "model", "pretrained_backbone_path", "pretrained_model_path", None)
    errs += rules.check_divisible(model.hidden_dim, model.nheads, "model.hidden_dim", "split evenly across model.nheads")
    errs += rules.check_divisible(model.hidden_dim, 32, "model.hidden_dim", "the input projection uses GroupNorm(32)")
    errs += rules.check_one_of(model.return_interm_indices, RETURN_INTERM_INDICES, "model.return_interm_indices")
    if len(model.return_interm_indices) != model.num_feature_levels:
        fits = [c for c in RETURN_INTERM_INDICES if len(c) == model.num_feature_levels]
        hint = f", e.g. {fits[0]}" if fits else ""
        errs.append(
            SpecError(
                "model.return_interm_indices",
                rules.plain(model.return_interm_indices),
                f"{model.num_feature_levels} indices, one per feature level (model.num_feature_levels)"
                f"{hint}; or change num_feature_levels to {len(model.return_interm_indices)}",
            )
        )
    # Seed 003: num_classes too low gives a CUDA device-side assert. Category ids start at 1
    # (0 is background), so a single logit can never be right; the exact bound needs the
    # annotations (rules.check_num_classes_covers, run by the data loader).
    if ds.num_classes < 2:
        errs.append(
            SpecError(
                "dataset.num_classes",
                ds.num_classes,
                "at least 2: COCO category ids start at 1 (0 is background), so num_classes = max(category_id) + 1",
            )
        )
    elif model.num_select > model.num_queries * ds.num_classes:
        # Post-processing takes the top num_select over all num_queries x num_classes scores.
        errs.append(
            SpecError(
                "model.num_select",
                model.num_select,
                f"at most model.num_queries * dataset.num_classes = {model.num_queries * ds.num_classes}",
            )
        )
    for i, cid in enumerate(ds.eval_class_ids or []):
        if cid >= ds.num_classes:
            errs.append(
                SpecError(f"dataset.eval_class_ids[{i}]", cid, f"a category id below dataset.num_classes ({ds.num_classes})")
            )

    errs += rules.check_ordered(
        aug.train_random_crop_min, aug.train_random_crop_max,
        "dataset.augmentation.train_random_crop_min", "dataset.augmentation.train_random_crop_max",
    )
    errs += rules.check_divisible(
        aug.fixed_random_crop, CROP_MULTIPLE, "dataset.augmentation.fixed_random_crop",
        "the crop must tile the stride-32 feature map",
    )
    errs += rules.check_length_in(aug.input_mean, (1, 3), "dataset.augmentation.input_mean")
    errs += rules.check_length_in(aug.input_std, (1, 3), "dataset.augmentation.input_std")
    errs += _normalise_infer_source(ds)

    optim = cfg.train.optim
    errs += rules.reconcile_alias(optim, "train.optim", "lr_monitor", "monitor_name", "val_loss")
    if task == "train" and optim.lr_scheduler == "MultiStep":
        errs += rules.require(optim.lr_steps, "train.optim.lr_steps", "at least one epoch for the MultiStep scheduler")

    for section in GPU_SECTIONS:
        errs += rules.check_gpus(cfg[section], section)
    for section in ("evaluate", "inference", "export"):
        if cfg[section].batch_size == 0:
            errs.append(SpecError(f"{section}.batch_size", 0, "-1 (dynamic / dataset.batch_size) or a value > 0"))

    errs += check_task_requirements(cfg, task, network_title)
    return errs
