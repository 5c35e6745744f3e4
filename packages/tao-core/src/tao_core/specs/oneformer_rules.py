"""Cross-field rules of the OneFormer spec (seed 004), run by the engine after the merge.

`check_rules(cfg, task)` returns every problem as a SpecError (dotted path, bad value, what is
allowed). The engine calls it while the merged config is still writable, so it also settles the
values seed 004 says are *modified* rather than rejected, and the pairs of spellings the seed
prints for one setting, before the config is frozen:

  - num_gpus vs gpu_ids (train / evaluate / inference): the seed's Note: "If both are passed, but
    are inconsistent, for example num_gpus = 1, gpu_ids = [0, 1], then they are modified to follow
    the setting that implies more GPUs; in the same example num_gpus is modified from 1 to 2."
    (`rules.check_gpus`; when num_gpus is the larger, gpu_ids keeps the user's ids and is
    completed with the lowest unused indices.)
  - model.backbone.type / .name, train.pretrained_model / .pretrained_model_path,
    train.pretrained_backbone / model.backbone.pretrained_weights,
    model.{object_mask_threshold, overlap_threshold, test_topk_per_image} / model.test.*.
  - inference.mode null -> model.mode.

Nothing here touches the file system: specs are checked before any data is read.
"""

from typing import Any, List

from tao_core.errors import SpecError
from tao_core.specs.common import check_trt_rules
from tao_core.specs.oneformer_dataset import split_format
from tao_core.specs.rules import check_divisible, check_gpus, check_ordered, is_set, reconcile_alias, require

GPU_SECTIONS = ("train", "evaluate", "inference")
# Which annotation formats can supply the targets of each result kind. A COCO panoptic source
# yields semantic, instance and panoptic targets; a COCO instance source semantic (painted masks)
# and instance ones; a JSON-lines source only semantic maps.
FORMATS_FOR = {
    "semantic": ("semantic", "panoptic", "instance"),
    "instance": ("panoptic", "instance"),
    "panoptic": ("panoptic",),
}
# The postprocessing settings printed both under model and model.test, with their shared default.
_TEST_DEFAULTS = {"object_mask_threshold": 0.4, "overlap_threshold": 0.8, "test_topk_per_image": 100}
# model.test flags -> the result kind each one asks evaluation for.
EVAL_FLAGS = {"semantic_on": "semantic", "instance_on": "instance", "panoptic_on": "panoptic"}


def check_rules(cfg, task: str) -> List[SpecError]:
    errors: List[SpecError] = []
    errors += _settle_gpus(cfg, task)
    errors += _settle_aliases(cfg)
    errors += _check_task_inputs(cfg, task)
    errors += _check_model(cfg.model)
    errors += _check_dataset(cfg.dataset)
    # Task-only settings are checked for their task: a stale export section must not stop training.
    if task == "train":
        errors += _check_train(cfg.train)
    if task == "export":
        errors += _check_export(cfg)
    if task == "gen_trt_engine":
        errors += check_trt_rules(cfg.gen_trt_engine)
    return errors


# ----------------------------------------------------------------------------- normalisation


def _settle_gpus(cfg, task: str) -> List[SpecError]:
    errors = []
    for name in GPU_SECTIONS:
        found = check_gpus(cfg[name], name)
        # A broken section that this task doesn't run must not block it.
        if name == task:
            errors += found
    return errors


def _reconcile_across(a, a_path: str, a_key: str, b, b_path: str, b_key: str, default: Any) -> List[SpecError]:
    """reconcile_alias for two spellings living in different sections (same default)."""
    va, vb = a[a_key], b[b_key]
    if va == vb:
        return []
    if vb == default:
        b[b_key] = va
        return []
    if va == default:
        a[a_key] = vb
        return []
    return [SpecError(f"{b_path}.{b_key}", vb, f"the same value as {a_path}.{a_key} ({va!r}): both name one setting; set only one")]


def _settle_aliases(cfg) -> List[SpecError]:
    errors = []
    backbone = cfg.model.backbone
    if backbone.type is not None:
        # `type` has no default, so when given it decides; a different explicit `name` conflicts.
        if backbone.name not in (backbone.type, "D2SwinTransformer"):
            errors.append(
                SpecError(
                    "model.backbone.type", backbone.type,
                    f"the same value as model.backbone.name ({backbone.name!r}): both name the backbone; set only one",
                )
            )
        else:
            backbone.name = backbone.type
    backbone.type = backbone.name

    errors += reconcile_alias(cfg.train, "train", "pretrained_model_path", "pretrained_model", None)
    errors += _reconcile_across(
        backbone, "model.backbone", "pretrained_weights", cfg.train, "train", "pretrained_backbone", None
    )
    model = cfg.model
    for key, default in _TEST_DEFAULTS.items():
        errors += _reconcile_across(model, "model", key, model.test, "model.test", key, default)
    if cfg.inference.mode is None:
        cfg.inference.mode = model.mode
    return errors


# ----------------------------------------------------------------------------- task inputs


def _check_split_files(split, path: str, why: str) -> List[SpecError]:
    errors = require(split.annotations, f"{path}.annotations", f"an annotation file: {why}")
    fmt = split_format(split)
    if fmt is None:
        return errors
    name = str(split.annotations).lower()
    if not name.endswith((".json", ".jsonl")):
        return [
            SpecError(
                f"{path}.annotations", split.annotations,
                "a .jsonl file (semantic) or a COCO panoptic / COCO .json file (panoptic / instance)",
            )
        ]
    if fmt == "semantic" and is_set(split.panoptic):
        errors.append(
            SpecError(
                f"{path}.panoptic", split.panoptic,
                "null for a JSON-lines (semantic) source; the panoptic PNG folder goes with a COCO panoptic .json",
            )
        )
    if fmt != "semantic":
        # COCO file names are relative to the image folder; JSONL lines may carry full paths.
        errors += require(split.images, f"{path}.images", f"the image directory of {split.annotations}")
    return errors


def _check_eval_formats(cfg, split_name: str) -> List[SpecError]:
    """The results model.test asks evaluation for must be computable from the split's format."""
    split = cfg.dataset[split_name]
    fmt = split_format(split)
    if fmt is None:
        return []
    errors = []
    for flag, kind in EVAL_FLAGS.items():
        if cfg.model.test[flag] and fmt not in FORMATS_FOR[kind]:
            allowed = " or ".join(FORMATS_FOR[kind])
            errors.append(
                SpecError(
                    f"model.test.{flag}", True,
                    f"false: {kind} evaluation needs {allowed} annotations, but dataset.{split_name} is {fmt} "
                    f"({split.annotations})",
                )
            )
    return errors


def _check_task_inputs(cfg, task: str) -> List[SpecError]:
    errors = []
    if task == "train":
        errors += _check_split_files(cfg.dataset.train, "dataset.train", "training reads it")
        # validation_interval is > 0, so training always validates.
        errors += _check_split_files(cfg.dataset.val, "dataset.val", "training validates every validation_interval epochs")
        errors += _check_eval_formats(cfg, "val")
    elif task == "evaluate":
        errors += _check_model_source(cfg.evaluate, "evaluate")
        errors += _check_split_files(cfg.dataset.test, "dataset.test", "evaluate reads it")
        errors += _check_eval_formats(cfg, "test")
        if not any(cfg.model.test[flag] for flag in EVAL_FLAGS):
            errors.append(
                SpecError("model.test.semantic_on", False, "true for at least one of semantic_on, instance_on, panoptic_on")
            )
    elif task == "inference":
        errors += _check_model_source(cfg.inference, "inference")
        if not is_set(cfg.inference.images_dir) and not is_set(cfg.dataset.test.images):
            errors.append(
                SpecError("inference.images_dir", cfg.inference.images_dir, "the directory of images to segment (or dataset.test.images)")
            )
    elif task == "export":
        errors += require(cfg.export.checkpoint, "export.checkpoint", "the .pth model to export (export.checkpoint=...)")
        errors += require(cfg.export.onnx_file, "export.onnx_file", "the .onnx path to write (export.onnx_file=...)")
    elif task == "gen_trt_engine":
        errors += require(cfg.gen_trt_engine.onnx_file, "gen_trt_engine.onnx_file", "the exported .onnx to build from")
        errors += require(cfg.gen_trt_engine.trt_engine, "gen_trt_engine.trt_engine", "the engine file to write")
    return errors


def _check_model_source(section, path: str) -> List[SpecError]:
    # tao model <task> reads `checkpoint`; tao deploy <task> reads `trt_engine` from the same spec.
    if is_set(section.checkpoint) or is_set(section.trt_engine):
        return []
    return [SpecError(f"{path}.checkpoint", section.checkpoint, f"the .pth model ({path}.checkpoint=...) or, for tao deploy, {path}.trt_engine")]


# ----------------------------------------------------------------------------- model


def _check_model(model) -> List[SpecError]:
    errors = []
    dec, head, text = model.one_former, model.sem_seg_head, model.text_encoder
    if dec.hidden_dim % dec.nheads:
        errors.append(
            SpecError("model.one_former.hidden_dim", dec.hidden_dim, f"a multiple of model.one_former.nheads ({dec.nheads})")
        )
    if text.n_ctx >= dec.num_object_queries:
        # The n_ctx text-context queries are taken from num_object_queries; some must be left for objects.
        errors.append(
            SpecError(
                "model.text_encoder.n_ctx", text.n_ctx,
                f"fewer than model.one_former.num_object_queries ({dec.num_object_queries})",
            )
        )
    if 0 <= head.ignore_value < head.num_classes:
        errors.append(
            SpecError(
                "model.sem_seg_head.ignore_value", head.ignore_value,
                f"a label outside the class ids 0..{head.num_classes - 1} (e.g. 255)",
            )
        )
    errors += _check_backbone(model.backbone)

    out_features = list(_backbone_out_features(model.backbone))
    for i, name in enumerate(head.in_features):
        if name not in out_features:
            errors.append(
                SpecError(f"model.sem_seg_head.in_features[{i}]", name, f"a feature map the backbone outputs: {out_features}")
            )
    in_features = list(head.in_features)
    deform = list(head.deformable_transformer_encoder_in_features)
    for i, name in enumerate(deform):
        if name not in in_features:
            errors.append(
                SpecError(
                    f"model.sem_seg_head.deformable_transformer_encoder_in_features[{i}]", name,
                    f"one of model.sem_seg_head.in_features {in_features}",
                )
            )
    if len(deform) != dec.num_feature_levels:
        # The decoder attends to one level per feature map of the deformable encoder.
        errors.append(
            SpecError(
                "model.one_former.num_feature_levels", dec.num_feature_levels,
                f"{len(deform)}, the number of model.sem_seg_head.deformable_transformer_encoder_in_features {deform}",
            )
        )
    return errors


def _backbone_out_features(backbone):
    return backbone.swin.out_features if backbone.name == "D2SwinTransformer" else backbone.efficientvit.out_features


def _check_backbone(backbone) -> List[SpecError]:
    if backbone.name != "D2SwinTransformer":
        return []
    swin, p = backbone.swin, "model.backbone.swin"
    errors = []
    stages = len(swin.depths)
    if len(swin.num_heads) != stages:
        errors.append(SpecError(f"{p}.num_heads", list(swin.num_heads), f"one value per stage: {stages} (len of {p}.depths)"))
    else:
        for i, heads in enumerate(swin.num_heads):
            # Stage i works at embed_dim * 2**i channels, split evenly across its heads.
            dim = swin.embed_dim * 2**i
            if dim % heads:
                errors.append(SpecError(f"{p}.num_heads[{i}]", heads, f"a divisor of the stage's {dim} channels ({p}.embed_dim * 2**{i})"))
    for i, idx in enumerate(swin.out_indices):
        if idx >= stages:
            errors.append(SpecError(f"{p}.out_indices[{i}]", idx, f"a stage index below {stages} (len of {p}.depths)"))
    if len(swin.out_indices) != len(swin.out_features):
        errors.append(
            SpecError(f"{p}.out_features", list(swin.out_features), f"one name per out_indices entry ({len(swin.out_indices)})")
        )
    return errors


# ----------------------------------------------------------------------------- dataset, train, export


def _check_dataset(ds) -> List[SpecError]:
    return check_ordered(ds.min_scale, ds.max_scale, "dataset.min_scale", "dataset.max_scale")


def _check_train(train) -> List[SpecError]:
    ms = list(train.optim.milestones)
    if train.optim.lr_scheduler == "MultiStep" and any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
        return [SpecError("train.optim.milestones", ms, "strictly increasing epochs, e.g. [11, 20]")]
    return []


def _check_export(cfg) -> List[SpecError]:
    export = cfg.export
    errors = []
    if export.batch_size == 0:
        errors.append(SpecError("export.batch_size", 0, "-1 (dynamic batch) or a batch size > 0"))
    div = cfg.model.one_former.size_divisibility
    if div:
        # The exported graph has a fixed H x W and no padding step, so the input must already be
        # the padded size the model works on.
        why = "the exported graph has no padding to model.one_former.size_divisibility"
        errors += check_divisible(export.input_width, div, "export.input_width", why)
        errors += check_divisible(export.input_height, div, "export.input_height", why)
    return errors
