"""dataset_convert: KITTI -> sharded TFRecords with TAO's keys; partitions; bad labels all at once."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import export_spec, make_kitti

from tao_core.data.kitti import read_kitti_labels
from tao_core.errors import TaoUserError
from tao_tf.detectnet_v2.cli import CLI
from tao_tf.detectnet_v2.data.tfrecords import FLOAT_TARGETS, parse_example_bytes


def _records(path):
    import tensorflow as tf

    return [parse_example_bytes(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]


def test_random_partition_shards_keys_and_round_trip(kitti10, tmp_path, caplog):
    spec = tmp_path / "convert.txt"
    spec.write_text(export_spec(kitti10, shards=2, val_split=20))
    out = tmp_path / "tfrecords" / "raccoon"
    caplog.set_level("INFO")
    assert CLI.run("dataset_convert", ["-d", str(spec), "-o", str(out)]) == 0
    names = sorted(p.name for p in out.parent.iterdir() if "-fold-" in p.name)
    assert names == [f"raccoon-fold-{f:03d}-of-002-shard-{s:05d}-of-00002" for f in (0, 1) for s in (0, 1)]
    fold0 = [r for s in (0, 1) for r in _records(f"{out}-fold-000-of-002-shard-{s:05d}-of-00002")]
    fold1 = [r for s in (0, 1) for r in _records(f"{out}-fold-001-of-002-shard-{s:05d}-of-00002")]
    assert len(fold0) == 2 and len(fold1) == 8  # 20 % of the 10 sorted names -> fold 0
    frames = sorted(kitti10.joinpath("images").iterdir())
    assert [r.frame_id for r in fold0] == [f"images/{p.stem}" for p in frames[:2]]
    first = fold0[0]
    labels = read_kitti_labels(kitti10 / "labels" / (frames[0].stem + ".txt"))
    from PIL import Image

    w, h = Image.open(frames[0]).size
    assert (first.width, first.height) == (w, h)
    assert first.classes == [o.type for o in labels] and set(first.classes) == {"raccoon"}
    np.testing.assert_allclose(first.boxes, [o.bbox for o in labels])
    assert set(first.values) == {f"target/{k}" for k in FLOAT_TARGETS} | {"target/occlusion"}
    text = caplog.text
    assert "Num images in\nTrain: 8\tVal: 2" in text
    assert "Validation data in partition 0" in text and "Writing partition 1, shard 1" in text
    assert "Class map." in text and "raccoon: raccoon" in text and "Tfrecords generation complete." in text
    total = sum(len(read_kitti_labels(p)) for p in (kitti10 / "labels").iterdir())
    assert f"raccoon: {total}" in text
    status = [json.loads(line) for line in (tmp_path / "tfrecords" / "dataset_convert" / "status.json").open()]
    assert status[-1]["status"] == "SUCCESS"


def test_upper_case_classes_are_lower_cased_and_mapped(kitti10, tmp_path):
    label = sorted((kitti10 / "labels").iterdir())[0]
    label.write_text(label.read_text().replace("raccoon", "Raccoon"))
    spec = tmp_path / "convert.txt"
    mapping = 'target_class_mapping { key: "raccoon" value: "animal" }\n'
    spec.write_text(export_spec(kitti10, shards=1) + mapping)
    out = tmp_path / "out" / "tfr"
    CLI.run("dataset_convert", ["-d", str(spec), "-o", str(out)])
    records = _records(f"{out}-fold-000-of-002-shard-00000-of-00001")
    assert records[0].classes and set(records[0].classes) == {"animal"}


def test_sequence_partition(tmp_path):
    root = make_kitti(tmp_path / "data", 6)
    stems = sorted(p.stem for p in (root / "images").iterdir())
    (root / "seq.json").write_text(json.dumps({"a": stems[:3], "b": stems[3:5], "c": stems[5:]}))
    text = export_spec(root, shards=1).replace('partition_mode: "random"', 'partition_mode: "sequence"')
    text = text.replace("num_partitions: 2", 'num_partitions: 2\n  kitti_sequence_to_frames_file: "seq.json"')
    spec = tmp_path / "convert.txt"
    spec.write_text(text)
    out = tmp_path / "out" / "tfr"
    CLI.run("dataset_convert", ["-d", str(spec), "-o", str(out)])
    fold0 = _records(f"{out}-fold-000-of-002-shard-00000-of-00001")
    fold1 = _records(f"{out}-fold-001-of-002-shard-00000-of-00001")
    # sequences largest first, dealt round-robin: a (3) -> fold 0, b (2) -> fold 1, c (1) -> fold 0
    assert [r.frame_id.split("/")[1] for r in fold0] == stems[:3] + stems[5:]
    assert [r.frame_id.split("/")[1] for r in fold1] == stems[3:5]


def test_bad_labels_are_reported_all_at_once_and_nothing_is_written(kitti10, tmp_path):
    labels = sorted((kitti10 / "labels").iterdir())
    labels[0].write_text("raccoon 0 0 0 10 10 50\n")  # 8 fields
    labels[1].write_text("raccoon 0.00 0 0.00 ten 10 50 60 0 0 0 0 0 0 0\n")  # non-numeric
    labels[2].write_text("raccoon 0.00 0 0.00 50 10 20 60 0 0 0 0 0 0 0\n")  # x2 < x1
    labels[3].write_text("raccoon 0.00 0 0.00 1 1 20 60 0 0 0 0 0 0 0\nzebra 0.00 0 0.00 1 1 20 60 0 0 0 0 0 0 0\n")
    labels[4].unlink()
    spec = tmp_path / "convert.txt"
    spec.write_text(export_spec(kitti10) + 'target_class_mapping { key: "raccoon" value: "raccoon" }\n')
    out = tmp_path / "out" / "tfr"
    with pytest.raises(TaoUserError) as err:
        CLI.resolve_task("dataset_convert")(["-d", str(spec), "-o", str(out)])
    msg = str(err.value)
    assert msg.startswith("5 bad label(s) or image(s); nothing was written")
    assert f"{labels[0]}:1: found 7 fields" in msg
    assert f"{labels[1]}:1: field 'x1' is 'ten'" in msg
    assert f"{labels[2]}:1: box (50, 10, 20, 60) has negative size" in msg
    assert f"{labels[3]}:2: class 'zebra' is not in target_class_mapping" in msg
    assert f"{labels[4]}: label file not found" in msg
    assert not [p for p in out.parent.iterdir() if "fold" in p.name]


def test_bad_spec_and_missing_dirs(kitti10, tmp_path):
    spec = tmp_path / "convert.txt"
    spec.write_text(export_spec(kitti10).replace("num_shards: 2", "num_shards: 50"))
    with pytest.raises(TaoUserError, match="num_shards"):
        CLI.resolve_task("dataset_convert")(["-d", str(spec), "-o", str(tmp_path / "o")])
    spec.write_text(export_spec(kitti10).replace('image_dir_name: "images"', 'image_dir_name: "nope"'))
    with pytest.raises(TaoUserError, match="image_dir_name: .*nope is not a directory"):
        CLI.resolve_task("dataset_convert")(["-d", str(spec), "-o", str(tmp_path / "o")])


def test_console_script_and_tao_launcher(kitti10, tmp_path):
    spec = tmp_path / "convert.txt"
    spec.write_text(export_spec(kitti10, shards=1))
    bindir = __import__("pathlib").Path(sys.executable).parent
    tao = shutil.which("tao", path=str(bindir))
    r = subprocess.run([tao, "model", "detectnet_v2", "dataset_convert", "-d", str(spec), "-o",
                        str(tmp_path / "o" / "t")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "o" / "t-fold-001-of-002-shard-00000-of-00001").exists()
    r = subprocess.run([str(bindir / "detectnet_v2"), "dataset_convert", "-d", str(tmp_path / "missing.txt"), "-o",
                        str(tmp_path / "o2")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 1 and "missing.txt" in r.stderr and "Traceback" not in r.stderr
