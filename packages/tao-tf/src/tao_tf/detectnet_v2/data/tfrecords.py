"""DetectNet_v2 TFRecords: the tf.train.Example layout TAO writes, built and parsed here only.

Keys (TAO's kitti_converter_lib, shared/research/anchors-tao.md §4.7), so shards made by TAO load
here and ours load in TAO:

    frame/id                      bytes   "<image_dir_name>/<frame name without extension>"
    frame/height, frame/width     int64   image size in pixels
    target/object_class           bytes   lower-cased (mapped) class name, one per object
    target/truncation             float
    target/occlusion              int64
    target/observation_angle      float   KITTI alpha
    target/coordinates_x1|y1|x2|y2 float  box in pixels
    target/world_bbox_h|w|l|x|y|z|rot_y float  KITTI 3-D fields

Shard files are `<output>-fold-XXX-of-XXX-shard-XXXXX-of-XXXXX`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tao_core.data.kitti import KittiObject

FLOAT_TARGETS = (
    "truncation", "observation_angle", "coordinates_x1", "coordinates_y1", "coordinates_x2", "coordinates_y2",
    "world_bbox_h", "world_bbox_w", "world_bbox_l", "world_bbox_x", "world_bbox_y", "world_bbox_z",
    "world_bbox_rot_y",
)  # fmt: skip


def shard_name(output: str, fold: int, num_folds: int, shard: int, num_shards: int) -> str:
    return f"{output}-fold-{fold:03d}-of-{num_folds:03d}-shard-{shard:05d}-of-{num_shards:05d}"


def _float_values(obj: KittiObject) -> dict[str, float]:
    h, w, length = obj.dimensions
    x, y, z = obj.location
    return dict(zip(FLOAT_TARGETS, (obj.truncated, obj.alpha, *obj.bbox, h, w, length, x, y, z, obj.rotation_y),
                    strict=True))  # fmt: skip


def build_example(frame_id: str, height: int, width: int, objects: list[KittiObject]):
    """One frame as a tf.train.Example with TAO's keys (objects already class-mapped)."""
    import tensorflow as tf

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    def strings(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values]))

    per_object = [_float_values(o) for o in objects]
    feature = {
        "frame/id": strings([frame_id]),
        "frame/height": ints([int(height)]),
        "frame/width": ints([int(width)]),
        "target/object_class": strings([o.type for o in objects]),
        "target/occlusion": ints([int(o.occluded) for o in objects]),
    }
    for key in FLOAT_TARGETS:
        feature[f"target/{key}"] = floats([v[key] for v in per_object])
    return tf.train.Example(features=tf.train.Features(feature=feature))


def feature_spec() -> dict:
    """The parsing spec of `tf.io.parse_single_example` for these Examples."""
    import tensorflow as tf

    spec = {
        "frame/id": tf.io.FixedLenFeature([], tf.string),
        "frame/height": tf.io.FixedLenFeature([], tf.int64),
        "frame/width": tf.io.FixedLenFeature([], tf.int64),
        "target/object_class": tf.io.VarLenFeature(tf.string),
        "target/occlusion": tf.io.VarLenFeature(tf.int64),
    }
    for key in FLOAT_TARGETS:
        spec[f"target/{key}"] = tf.io.VarLenFeature(tf.float32)
    return spec


@dataclass
class Frame:
    """A parsed Example in numpy (used by evaluation, calibration and tests)."""

    frame_id: str
    height: int
    width: int
    classes: list[str]
    boxes: np.ndarray  # [K, 4] x1 y1 x2 y2 in pixels
    values: dict  # every target/* key -> numpy array


def parse_example_bytes(serialized: bytes) -> Frame:
    """Decode one serialized Example without a graph (plain protobuf access)."""
    import tensorflow as tf

    ex = tf.train.Example.FromString(serialized)
    f = ex.features.feature

    def floats(key):
        return np.asarray(f[key].float_list.value, dtype=np.float32) if key in f else np.zeros(0, np.float32)

    classes = [v.decode("utf-8") for v in f["target/object_class"].bytes_list.value]
    values = {f"target/{k}": floats(f"target/{k}") for k in FLOAT_TARGETS}
    values["target/occlusion"] = np.asarray(f["target/occlusion"].int64_list.value, dtype=np.int64)
    boxes = np.stack([values[f"target/coordinates_{c}"] for c in ("x1", "y1", "x2", "y2")], axis=1).reshape(-1, 4)
    return Frame(
        frame_id=f["frame/id"].bytes_list.value[0].decode("utf-8"),
        height=int(f["frame/height"].int64_list.value[0]),
        width=int(f["frame/width"].int64_list.value[0]),
        classes=classes,
        boxes=boxes,
        values=values,
    )
