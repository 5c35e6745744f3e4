"""tf.data input pipeline of DetectNet_v2: TFRecords -> decoded, preprocessed, augmented images + targets.

    frames = frame_dataset(experiment, "train")            # one dict per frame, no augmentation
    train = training_dataset(experiment, batch_size=8)    # (image NCHW, {cov, bbox, cov_norm})

Files: every `tfrecords_path` glob of dataset_config.data_sources; with `validation_fold` the
shards of that fold are the validation set and the others the training set; with
`validation_data_source` its own shards are the validation set. The image of a record is
`<image_directory_path>/<frame/id>.<image_extension>`.

Preprocessing (augmentation_config.preprocessing): crop_left/top/right/bottom when set, then
resize to output_image_width x output_image_height with enable_auto_resize, else pad (or
crop) at the bottom / right to that size; RGB scaled to [0, 1]. Training augmentation: one
affine (h/v flip, zoom in [zoom_min, zoom_max], translate up to translate_max_x/y pixels,
rotation up to rotate_rad_max with rotate_probability) applied to the image and the box corners
(boxes become the bounds of their transformed corners, clipped to the image), then colour
(hue rotation, saturation shift, contrast around contrast_center, per-channel colour shift).
Decoding, augmentation and rasterization run in parallel (`AUTOTUNE`) and batches are prefetched.
"""

from __future__ import annotations

import glob
import math
import os

import tensorflow as tf

from tao_core.data.kitti import normalize_mapping
from tao_core.errors import TaoUserError
from tao_core.tasks.detectnet_v2 import bbox_scale_offset, class_names, input_shape  # noqa: F401 (re-exported)
from tao_tf.detectnet_v2.data.tfrecords import feature_spec
from tao_tf.detectnet_v2.model.rasterizer import ClassRaster, rasterize

AUTOTUNE = tf.data.AUTOTUNE


def _fold_of(path: str) -> int | None:
    marker = "-fold-"
    i = path.rfind(marker)
    if i < 0:
        return None
    try:
        return int(path[i + len(marker) : i + len(marker) + 3])
    except ValueError:
        return None


def _files_of(source, field: str) -> list[str]:
    files = sorted(glob.glob(source.tfrecords_path))
    if not files:
        raise TaoUserError(f"{field}.tfrecords_path: no files match {source.tfrecords_path!r}")
    if not os.path.isdir(source.image_directory_path):
        raise TaoUserError(f"{field}.image_directory_path: {source.image_directory_path!r} is not a directory")
    return files


def split_files(experiment, split: str) -> list[tuple[str, str]]:
    """[(tfrecord file, image directory)] of the "train" or "val" split."""
    ds = experiment.dataset_config
    if not ds.data_sources:
        raise TaoUserError("dataset_config.data_sources: at least one data source is needed")
    which = ds.WhichOneof("dataset_split_type")
    out = []
    if split == "val" and which == "validation_data_source":
        src = ds.validation_data_source
        return [(f, src.image_directory_path) for f in _files_of(src, "dataset_config.validation_data_source")]
    for i, src in enumerate(ds.data_sources):
        for f in _files_of(src, f"dataset_config.data_sources.{i}"):
            in_val = which == "validation_fold" and _fold_of(f) == ds.validation_fold
            if (split == "val") == in_val:
                out.append((f, src.image_directory_path))
    if not out:
        what = "validation" if split == "val" else "training"
        raise TaoUserError(f"dataset_config: no {what} TFRecords (validation_fold {ds.validation_fold} "
                           f"of {[s.tfrecords_path for s in ds.data_sources]})")  # fmt: skip
    return out


def count_frames(files: list[tuple[str, str]]) -> int:
    return sum(1 for f, _ in files for _ in tf.data.TFRecordDataset(f))


def _class_table(experiment) -> tf.lookup.StaticHashTable:
    """Lower-cased source class -> index of its target class (-1 when not mapped)."""
    names = class_names(experiment)
    mapping = normalize_mapping(dict(experiment.dataset_config.target_class_mapping),
                                "dataset_config.target_class_mapping")  # fmt: skip
    if not mapping:
        mapping = {n.lower(): n for n in names}
    unknown = sorted({t for t in mapping.values() if t not in names})
    if unknown:
        raise TaoUserError(f"dataset_config.target_class_mapping: targets {unknown} are not in "
                           f"cost_function_config.target_classes {names}")  # fmt: skip
    keys = tf.constant(list(mapping))
    values = tf.constant([names.index(t) for t in mapping.values()], tf.int32)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


def frame_dataset(experiment, split: str) -> tf.data.Dataset:
    """Preprocessed frames (no augmentation): {image [H,W,C] float in [0,1], boxes [K,4], class_ids [K],
    frame_id, image_path, scale [2] (x, y; original -> network pixels)}."""
    files = split_files(experiment, split)
    ext = experiment.dataset_config.image_extension or "png"
    ext = ext.lstrip(".")
    table = _class_table(experiment)
    channels, out_h, out_w = input_shape(experiment)
    pre = experiment.augmentation_config.preprocessing
    spec = feature_spec()

    def parse(serialized, image_dir):
        ex = tf.io.parse_single_example(serialized, spec)
        classes = tf.strings.lower(tf.sparse.to_dense(ex["target/object_class"], default_value=""))
        coords = [tf.sparse.to_dense(ex[f"target/coordinates_{k}"]) for k in ("x1", "y1", "x2", "y2")]
        boxes = tf.stack(coords, axis=1)
        path = tf.strings.join([image_dir, "/", ex["frame/id"], ".", ext])
        raw = tf.io.read_file(path)
        image = tf.io.decode_image(raw, channels=channels, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        image, boxes, scale = _preprocess(image, boxes, pre, out_h, out_w)
        return {"image": image, "boxes": boxes, "class_ids": table.lookup(classes), "frame_id": ex["frame/id"],
                "image_path": path, "scale": scale}  # fmt: skip

    names = tf.data.Dataset.from_tensor_slices(([f for f, _ in files], [d for _, d in files]))
    records = names.interleave(
        lambda f, d: tf.data.TFRecordDataset(f).map(lambda s: (s, d)), cycle_length=1
    )
    return records.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)


def _preprocess(image, boxes, pre, out_h, out_w):
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    if pre.crop_right or pre.crop_bottom or pre.crop_left or pre.crop_top:
        right = pre.crop_right or w
        bottom = pre.crop_bottom or h
        image = image[pre.crop_top : bottom, pre.crop_left : right]
        boxes = boxes - tf.constant([pre.crop_left, pre.crop_top, pre.crop_left, pre.crop_top], tf.float32)
        h, w = tf.shape(image)[0], tf.shape(image)[1]
    if pre.enable_auto_resize:
        sx = tf.cast(out_w, tf.float32) / tf.cast(w, tf.float32)
        sy = tf.cast(out_h, tf.float32) / tf.cast(h, tf.float32)
        image = tf.image.resize(image, (out_h, out_w), method="bilinear")
        boxes = boxes * tf.stack([sx, sy, sx, sy])
    else:
        sx = sy = tf.constant(1.0)
        image = tf.image.pad_to_bounding_box(image[:out_h, :out_w], 0, 0, out_h, out_w)
    limit = tf.constant([out_w, out_h, out_w, out_h], tf.float32)
    boxes = tf.clip_by_value(boxes, 0.0, limit)
    image = tf.ensure_shape(image, (out_h, out_w, None))
    return image, boxes, tf.stack([sx, sy])


def _affine(aug, out_h, out_w):
    """Forward 3x3 matrix (input pixel -> output pixel) of one random spatial augmentation."""
    s = aug.spatial_augmentation
    cx, cy = out_w / 2.0, out_h / 2.0
    hflip = tf.random.uniform(()) < s.hflip_probability
    vflip = tf.random.uniform(()) < s.vflip_probability
    zoom_min, zoom_max = s.zoom_min or 1.0, s.zoom_max or 1.0
    zoom = tf.random.uniform((), zoom_min, zoom_max) if zoom_max > zoom_min else tf.constant(zoom_min)
    tx = tf.random.uniform((), -s.translate_max_x, s.translate_max_x) if s.translate_max_x else tf.constant(0.0)
    ty = tf.random.uniform((), -s.translate_max_y, s.translate_max_y) if s.translate_max_y else tf.constant(0.0)
    rotate = tf.random.uniform(()) < s.rotate_probability
    angle = tf.where(rotate, tf.random.uniform((), -s.rotate_rad_max, s.rotate_rad_max), 0.0)
    fx = tf.where(hflip, -1.0, 1.0)
    fy = tf.where(vflip, -1.0, 1.0)
    c, sn = tf.cos(angle) * zoom, tf.sin(angle) * zoom
    # x' = R*Z*F*(x - centre) + centre + t
    a, b = c * fx, -sn * fy
    d, e = sn * fx, c * fy
    m = tf.stack([
        tf.stack([a, b, cx + tx - a * cx - b * cy]),
        tf.stack([d, e, cy + ty - d * cx - e * cy]),
        tf.constant([0.0, 0.0, 1.0]),
    ])  # fmt: skip
    return m


def _augment(image, boxes, aug, out_h, out_w):
    m = _affine(aug, out_h, out_w)
    inv = tf.linalg.inv(m)
    transform = tf.reshape(inv, (-1,))[:8][None]
    image = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform, output_shape=tf.constant([out_h, out_w]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )[0]  # fmt: skip
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    corners = tf.stack([tf.stack([x1, y1], 1), tf.stack([x2, y1], 1), tf.stack([x1, y2], 1), tf.stack([x2, y2], 1)], 1)
    moved = tf.einsum("ij,kcj->kci", m[:2, :2], corners) + m[:2, 2]
    lo, hi = tf.reduce_min(moved, axis=1), tf.reduce_max(moved, axis=1)
    boxes = tf.concat([lo, hi], axis=1)
    boxes = tf.clip_by_value(boxes, 0.0, tf.constant([out_w, out_h, out_w, out_h], tf.float32))
    image = _color(image, aug.color_augmentation)
    return image, boxes


def _color(image, col):
    if image.shape[-1] == 3:
        if col.hue_rotation_max:
            image = tf.image.adjust_hue(image, tf.random.uniform((), -col.hue_rotation_max, col.hue_rotation_max) / 360.0)
        if col.saturation_shift_max:
            image = tf.image.adjust_saturation(
                image, 1.0 + tf.random.uniform((), -col.saturation_shift_max, col.saturation_shift_max)
            )
    if col.contrast_scale_max:
        centre = col.contrast_center or 0.5
        factor = 1.0 + tf.random.uniform((), -col.contrast_scale_max, col.contrast_scale_max)
        image = (image - centre) * factor + centre
    if col.color_shift_stddev:
        image = image + tf.random.normal((1, 1, tf.shape(image)[-1]), stddev=col.color_shift_stddev)
    return tf.clip_by_value(image, 0.0, 1.0)


def raster_configs(experiment) -> tuple[list[ClassRaster], float]:
    cfg = experiment.bbox_rasterizer_config
    configs = []
    for name in class_names(experiment):
        if name not in cfg.target_class_config:
            raise TaoUserError(f"bbox_rasterizer_config.target_class_config: no entry for class {name!r}")
        configs.append(ClassRaster.from_proto(cfg.target_class_config[name]))
    return configs, cfg.deadzone_radius or 0.67


def training_dataset(experiment, batch_size: int, augment: bool = True, shuffle: bool = True,
                     split: str = "train", seed: int | None = None) -> tf.data.Dataset:  # fmt: skip
    """Batches of (image [N,C,H,W], {"cov", "bbox", "cov_norm"} NCHW targets), repeated forever."""
    channels, out_h, out_w = input_shape(experiment)
    configs, deadzone = raster_configs(experiment)
    scale, offset = bbox_scale_offset(experiment)
    num_classes = len(configs)
    aug = experiment.augmentation_config
    grid = (num_classes, out_h // 16, out_w // 16)

    def targets(boxes, class_ids):
        return rasterize(boxes, class_ids, num_classes, (out_h, out_w), configs, deadzone, scale, offset)

    def to_example(frame):
        image, boxes = frame["image"], frame["boxes"]
        if augment:
            image, boxes = _augment(image, boxes, aug, out_h, out_w)
        cov, bbox, norm = tf.numpy_function(targets, [boxes, frame["class_ids"]], [tf.float32] * 3)
        cov = tf.ensure_shape(cov, grid)
        bbox = tf.ensure_shape(bbox, (4 * num_classes, *grid[1:]))
        norm = tf.ensure_shape(norm, grid)
        image = tf.transpose(tf.ensure_shape(image, (out_h, out_w, channels)), (2, 0, 1))
        return image, {"cov": cov, "bbox": bbox, "cov_norm": norm}

    ds = frame_dataset(experiment, split)
    if shuffle:
        ds = ds.shuffle(256, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat().map(to_example, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def steps_per_epoch(num_frames: int, batch_size: int) -> int:
    return max(1, math.ceil(num_frames / batch_size))


def split_image_paths(experiment, split: str, limit: int | None = None) -> list[str]:
    """Image files of the split's frames in record order, read from the records alone (no image
    decoding), at most `limit`: e.g. the held-out images an exported engine is checked on."""
    from tao_tf.detectnet_v2.data.tfrecords import parse_example_bytes

    ext = (experiment.dataset_config.image_extension or "png").lstrip(".")
    paths = []
    for f, image_dir in split_files(experiment, split):
        for record in tf.data.TFRecordDataset(f).as_numpy_iterator():
            if limit is not None and len(paths) >= limit:
                return paths
            # the path frame_dataset reads: <image_directory_path>/<frame/id>.<image_extension>
            paths.append(f"{image_dir}/{parse_example_bytes(record).frame_id}.{ext}")
    return paths


def numpy_frames(experiment, split: str):
    """Iterate preprocessed frames as numpy dicts (evaluation, calibration)."""
    for frame in frame_dataset(experiment, split).as_numpy_iterator():
        frame["frame_id"] = frame["frame_id"].decode("utf-8")
        frame["image_path"] = frame["image_path"].decode("utf-8")
        yield frame

