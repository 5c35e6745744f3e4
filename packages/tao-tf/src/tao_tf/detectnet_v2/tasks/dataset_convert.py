"""`detectnet_v2 dataset_convert -d SPEC -o OUT [-f FOLD] [-r DIR]`: KITTI -> sharded TFRecords.

Every label file is read and checked first (field count, numbers, box size, class names); all
problems are reported together, naming file and line, before a single shard is written. Shards
are written to temporary files and renamed into place, so an interrupted run never leaves a
half-written shard under a final name.

Partitioning (TAO's kitti_converter_lib): `random` puts the first val_split percent of the
sorted frame names in fold 0 (validation) and the rest in fold 1; `sequence` reads
`kitti_sequence_to_frames_file` (JSON: sequence -> [frame names]) and deals the sequences,
largest first, round-robin over num_partitions folds. Each fold is cut into num_shards
contiguous shards.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from tao_core.cli.detectnet_v2_args import parse_args
from tao_core.data.images import image_size
from tao_core.data.kitti import KittiObject, normalize_mapping, parse_kitti_line
from tao_core.errors import TaoUserError
from tao_core.results import setup_task_logging, task_run
from tao_core.specs.detectnet_v2 import SPEC
from tao_tf.detectnet_v2.data.tfrecords import build_example, shard_name

log = logging.getLogger("tao_tf.detectnet_v2.dataset_convert")
IGNORED_CLASSES = ("dontcare",)  # KITTI's don't-care regions are written like any class
_MAX_REPORTED = 50


@dataclass
class FrameRecord:
    name: str  # file name without extension
    image_path: str
    width: int
    height: int
    objects: list[KittiObject]  # class names mapped through target_class_mapping
    original: list[KittiObject]  # as read (lower-cased)


def main(argv: list[str]) -> int:
    args = parse_args("dataset_convert", argv)
    results_dir = args.results_dir or os.path.dirname(os.path.abspath(args.output_filename))
    setup_task_logging(results_dir, "dataset_convert")
    with task_run(results_dir, "dataset_convert", network="detectnet_v2"):
        spec = SPEC.load("dataset_convert", args.dataset_export_spec)
        convert(spec, args.output_filename, args.dataset_export_spec)
    return 0


def convert(spec, output: str, source: str | None = None) -> dict:
    """Run the conversion described by a DatasetExportConfig; returns the written shard paths and counts."""
    if spec.WhichOneof("convert_config_type") != "kitti_config":
        raise TaoUserError(f"{source or 'dataset export spec'}: only kitti_config is supported (got "
                           f"{spec.WhichOneof('convert_config_type') or 'no convert config'})")  # fmt: skip
    _reject_sample_modifier(spec, source)
    kc = spec.kitti_config
    log.info("Instantiating a kitti converter")
    mapping = normalize_mapping(dict(spec.target_class_mapping), "target_class_mapping")
    frames = load_frames(kc, mapping)
    folds = partition(frames, kc)
    mode = kc.partition_mode or "random"
    if mode == "random":
        log.info("Num images in\nTrain: %d\tVal: %d", len(folds[1]), len(folds[0]))
        log.info("Validation data in partition 0. Hence, while choosing the validation set during training "
                 "choose validation_fold 0.")  # fmt: skip
    num_shards = kc.num_shards or 10
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    written, total = [], Counter()
    for fold, members in enumerate(folds):
        counts = Counter()
        for shard, chunk in enumerate(np.array_split(np.arange(len(members)), num_shards)):
            log.info("Writing partition %d, shard %d", fold, shard)
            path = shard_name(output, fold, len(folds), shard, num_shards)
            _write_shard(path, [members[i] for i in chunk], kc.image_dir_name, counts)
            written.append(path)
        log.info("\nWrote the following numbers of objects:\n%s\n", _counts_text(counts))
        total.update(counts)
    log.info("Cumulative object statistics")
    log.info("\nWrote the following numbers of objects:\n%s", _counts_text(total))
    gt_names = sorted({o.type for f in frames for o in f.original})
    class_map = "\n".join(f"{name}: {mapping.get(name, name)}" for name in gt_names)
    log.info("Class map. \nLabel in GT: Label in tfrecords file \n%s\nFor the dataset_config in the "
             "experiment_spec, please use labels in the tfrecords file, while writing the classmap.\n", class_map)
    log.info("Tfrecords generation complete.")
    return {"shards": written, "num_frames": [len(f) for f in folds], "objects": dict(total)}


def _reject_sample_modifier(spec, source) -> None:
    if spec.HasField("sample_modifier_config") and spec.sample_modifier_config.ListFields():
        raise TaoUserError(f"{source or 'dataset export spec'}: sample_modifier_config is not supported by this "
                           "converter; remove it (the frames are written unmodified)")  # fmt: skip


def _counts_text(counts: Counter) -> str:
    return "\n".join(f"{name}: {n}" for name, n in sorted(counts.items()))


def _image_extension(kc) -> str:
    ext = kc.image_extension or ".png"
    return ext if ext.startswith(".") else "." + ext


def load_frames(kc, mapping: dict[str, str]) -> list:
    """Read and check every frame; raise one TaoUserError listing every bad label / image."""
    root = kc.root_directory_path
    image_dir = os.path.join(root, kc.image_dir_name)
    label_dir = os.path.join(root, kc.label_dir_name)
    for field, folder in (("kitti_config.image_dir_name", image_dir), ("kitti_config.label_dir_name", label_dir)):
        if not os.path.isdir(folder):
            raise TaoUserError(f"{field}: {folder} is not a directory")
    ext = _image_extension(kc)
    names = sorted(f[: -len(ext)] for f in os.listdir(image_dir) if f.lower().endswith(ext.lower()))
    if not names:
        raise TaoUserError(f"kitti_config.image_extension: no '{ext}' images in {image_dir}")
    problems, frames = [], []
    for name in names:
        label_path = os.path.join(label_dir, name + ".txt")
        image_path = os.path.join(image_dir, name + ext)
        objects = _read_labels(label_path, mapping, problems)
        try:
            width, height = image_size(image_path)
        except TaoUserError as e:
            problems.append(str(e))
            continue
        if objects is not None:
            mapped = [replace(o, type=mapping.get(o.type, o.type)) for o in objects]
            frames.append(FrameRecord(name, image_path, width, height, mapped, objects))
    if problems:
        shown = problems[:_MAX_REPORTED]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise TaoUserError(f"{len(problems)} bad label(s) or image(s); nothing was written:\n  "
                           + "\n  ".join(shown) + more)  # fmt: skip
    return frames


def _read_labels(path: str, mapping: dict[str, str], problems: list[str]) -> list[KittiObject] | None:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        problems.append(f"{path}: label file not found (every image needs a KITTI .txt label file)")
        return None
    except UnicodeDecodeError:
        problems.append(f"{path}: not a UTF-8 text file; expected KITTI labels")
        return None
    objects, ok = [], True
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = parse_kitti_line(line, where)
        except TaoUserError as e:
            problems.append(str(e))
            ok = False
            continue
        if obj.x2 < obj.x1 or obj.y2 < obj.y1:
            problems.append(f"{where}: box ({obj.x1:g}, {obj.y1:g}, {obj.x2:g}, {obj.y2:g}) has negative size; "
                            "expected x1 <= x2 and y1 <= y2")  # fmt: skip
            ok = False
            continue
        if mapping and obj.type not in mapping and obj.type not in IGNORED_CLASSES:
            problems.append(f"{where}: class '{obj.type}' is not in target_class_mapping "
                            f"(known: {', '.join(sorted(mapping))})")  # fmt: skip
            ok = False
            continue
        objects.append(obj)
    return objects if ok else None


def partition(frames: list, kc) -> list[list]:
    """Frames per fold (fold 0 first)."""
    mode = kc.partition_mode or "random"
    if mode == "random":
        val_split = kc.val_split or 20.0
        num_val = int(len(frames) * val_split / 100.0)
        return [frames[:num_val], frames[num_val:]]
    if not kc.kitti_sequence_to_frames_file:
        raise TaoUserError("kitti_config.kitti_sequence_to_frames_file: needed in partition_mode 'sequence'")
    path = os.path.join(kc.root_directory_path, kc.kitti_sequence_to_frames_file)
    try:
        with open(path, encoding="utf-8") as f:
            sequences = json.load(f)
    except FileNotFoundError:
        raise TaoUserError(f"kitti_config.kitti_sequence_to_frames_file: {path} not found") from None
    except json.JSONDecodeError as e:
        raise TaoUserError(f"{path}: not JSON ({e}); expected {{sequence: [frame names]}}") from None
    if not isinstance(sequences, dict) or not all(isinstance(v, list) for v in sequences.values()):
        raise TaoUserError(f"{path}: expected a JSON object mapping each sequence to a list of frame names")
    num = kc.num_partitions or 2
    if num > len(sequences):
        raise TaoUserError(f"kitti_config.num_partitions: {num} partitions but only {len(sequences)} sequences "
                           f"in {path}")  # fmt: skip
    by_name = {f.name: f for f in frames}
    unknown = sorted({str(n) for seq in sequences.values() for n in seq} - set(by_name))
    if unknown:
        raise TaoUserError(f"{path}: frames {unknown[:5]} are not images in {kc.image_dir_name}")
    folds: list[list] = [[] for _ in range(num)]
    ordered = sorted(sequences.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    for i, (_, members) in enumerate(ordered):
        folds[i % num] += [by_name[str(n)] for n in members]
    return folds


def _write_shard(path: str, frames: list, image_dir_name: str, counts: Counter) -> None:
    import tensorflow as tf

    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for frame in frames:
                frame_id = os.path.join(image_dir_name, frame.name)
                writer.write(build_example(frame_id, frame.height, frame.width, frame.objects).SerializeToString())
                counts.update(o.type for o in frame.objects)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
