"""The convert task: KITTI folders -> sharded COCO json."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from tao_core.data.kitti import read_kitti_labels
from tao_core.data.kitti_to_coco import convert, kitti_to_coco_shards
from tao_core.errors import TaoUserError


def _load(files):
    return [json.loads(Path(f).read_text()) for f in files]


def _cfg(base, **changes):
    return SimpleNamespace(**{**vars(base), **changes})


def test_shard_names_and_layout(convert_cfg):
    summary = convert(convert_cfg)
    out = Path(convert_cfg.results_dir)
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert names == sorted(
        f"{s}/{s}-shard-{i:05d}-of-00003.json" for s in ("raccoon_train", "bccd_train") for i in range(3)
    )
    assert sorted(p.relative_to(out).as_posix() for p in summary.files) == names


def test_union_has_every_image_and_box(convert_cfg):
    summary = convert(convert_cfg)
    docs = _load(summary.files)
    images = [im for d in docs for im in d["images"]]
    anns = [a for d in docs for a in d["annotations"]]
    root = Path(convert_cfg.data_root)
    expected_boxes = {}
    for line in ("raccoon/train", "bccd/train"):
        for lab in sorted((root / line / "labels").glob("*.txt")):
            key = f"{line}/images/{lab.stem}.jpg"
            expected_boxes[key] = sorted((o.type, o.bbox) for o in read_kitti_labels(lab))
    assert sorted(im["file_name"] for im in images) == sorted(expected_boxes)
    cat_name = {c["id"]: c["name"].lower() for c in docs[0]["categories"]}
    by_image = {im["id"]: im["file_name"] for im in images}
    got = {k: [] for k in expected_boxes}
    for a in anns:
        x, y, w, h = a["bbox"]
        box = tuple(round(v, 6) for v in (x, y, x + w, y + h))  # x + (x2 - x1) may be off by 1 ulp
        got[by_image[a["image_id"]]].append((cat_name[a["category_id"]], box))
        assert a["area"] == pytest.approx(w * h) and a["iscrowd"] == 0
    assert {k: sorted(v) for k, v in got.items()} == expected_boxes
    assert summary.num_images == len(images) and summary.num_annotations == len(anns)


def test_ids_unique_across_shards_and_sources(convert_cfg):
    docs = _load(convert(convert_cfg).files)
    image_ids = [im["id"] for d in docs for im in d["images"]]
    ann_ids = [a["id"] for d in docs for a in d["annotations"]]
    assert sorted(image_ids) == list(range(1, len(image_ids) + 1))
    assert sorted(ann_ids) == list(range(1, len(ann_ids) + 1))
    for d in docs:  # every annotation points at an image of its own shard
        assert {a["image_id"] for a in d["annotations"]} <= {im["id"] for im in d["images"]}


def test_categories_descending_from_one(convert_cfg):
    docs = _load(convert(convert_cfg).files)
    cats = docs[0]["categories"]
    assert [c["id"] for c in cats] == [1, 2, 3, 4]
    assert [c["name"] for c in cats] == sorted({"raccoon", "Platelets", "RBC", "WBC"}, reverse=True)
    assert all(d["categories"] == cats for d in docs)


def test_real_image_sizes(convert_cfg):
    docs = _load(convert(convert_cfg).files)
    root = Path(convert_cfg.data_root)
    for im in (im for d in docs for im in d["images"]):
        with Image.open(root / im["file_name"]) as pil:
            assert (im["width"], im["height"]) == pil.size


def test_sizes_agree_with_shipped_coco_json(convert_cfg, shared_data):
    if shared_data is None:
        pytest.skip("shared data not available")
    docs = _load(convert(convert_cfg).files)
    ref = json.loads((shared_data / "raccoon" / "annotations" / "instances_train.json").read_text())
    ref_sizes = {im["file_name"]: (im["width"], im["height"]) for im in ref["images"]}
    ours = {Path(im["file_name"]).name: (im["width"], im["height"])
            for d in docs for im in d["images"] if im["file_name"].startswith("raccoon/")}
    assert ours == ref_sizes


def test_loads_with_pycocotools(convert_cfg):
    coco = pytest.importorskip("pycocotools.coco")
    for f in convert(convert_cfg).files:
        c = coco.COCO(str(f))
        assert len(c.getCatIds()) == 4


def test_deterministic_byte_identical(convert_cfg, tmp_path):
    a = convert(_cfg(convert_cfg, results_dir=str(tmp_path / "a")))
    b = convert(_cfg(convert_cfg, results_dir=str(tmp_path / "b")))
    assert [p.relative_to(tmp_path / "a") for p in a.files] == [p.relative_to(tmp_path / "b") for p in b.files]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a.files, b.files, strict=True))


def test_partitions_name_folds_and_split_frames(convert_cfg):
    summary = convert(_cfg(convert_cfg, num_partitions=2, num_shards=2))
    names = [p.name for p in summary.files if p.parent.name == "bccd_train"]
    assert names == [f"bccd_train-fold-{f:03d}-of-002-shard-{s:05d}-of-00002.json"
                     for f in range(2) for s in range(2)]
    docs = _load(summary.files)
    assert sum(len(d["images"]) for d in docs) == summary.num_images


def test_more_shards_than_frames_writes_empty_shards(tmp_path, make_source):
    make_source(tmp_path / "seq", ["car"], [(20, 10), (20, 10)])
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'seq'}\n")  # absolute line
    mp = tmp_path / "m.json"
    mp.write_text('{"car": "car"}')
    s = kitti_to_coco_shards(tmp_path / "list.txt", tmp_path / "out", "images", "labels",
                             num_shards=4, mapping_path=mp)
    assert [len(d["images"]) for d in _load(s.files)] == [1, 1, 0, 0]
    assert s.files[0].parent.name == "seq"
    assert json.loads(s.files[0].read_text())["images"][0]["file_name"] == f"{tmp_path / 'seq'}/images/img000.jpg"


def test_unmapped_and_degenerate_boxes_dropped(tmp_path, make_source):
    make_source(tmp_path / "seq", ["car", "tree"], [(20, 10)] * 3)
    (tmp_path / "seq" / "labels" / "img000.txt").write_text(
        "car 0 0 0 5 5 5 9 0 0 0 0 0 0 0\ncar 0 0 0 1 1 4 4 0 0 0 0 0 0 0\n")
    (tmp_path / "list.txt").write_text("seq\n")
    mp = tmp_path / "m.json"
    mp.write_text('{"Car": "car"}')
    s = kitti_to_coco_shards(tmp_path / "list.txt", tmp_path / "out", "images", "labels",
                             num_shards=1, mapping_path=mp)
    assert s.dropped_degenerate == 1
    assert s.skipped_unmapped == 2  # img001 and img002 each have one "tree"
    assert s.num_annotations == 1 + 1 + 2  # img000: 1 kept; img001: 1 car; img002: 2 cars


def test_default_mapping_used_when_none(tmp_path, make_source):
    make_source(tmp_path / "seq", ["Person", "backpack", "face", "car"], [(30, 20)] * 4)
    (tmp_path / "list.txt").write_text("seq\n")
    s = kitti_to_coco_shards(tmp_path / "list.txt", tmp_path / "out", "images", "labels", num_shards=1)
    assert s.categories == [{"id": 1, "name": "person", "supercategory": "person"},
                            {"id": 2, "name": "face", "supercategory": "face"},
                            {"id": 3, "name": "bag", "supercategory": "bag"}]


def test_exif_rotation_swaps_size(tmp_path, make_source):
    make_source(tmp_path / "seq", ["car"], [(40, 20)])
    img = tmp_path / "seq" / "images" / "img000.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: displayed as 20 wide, 40 high
    Image.new("RGB", (40, 20)).save(img, exif=exif)
    (tmp_path / "list.txt").write_text("seq\n")
    mp = tmp_path / "m.json"
    mp.write_text('{"car": "car"}')
    s = kitti_to_coco_shards(tmp_path / "list.txt", tmp_path / "out", "images", "labels",
                             num_shards=1, mapping_path=mp)
    (im,) = _load(s.files)[0]["images"]
    assert (im["width"], im["height"]) == (20, 40)


def test_same_folder_names_are_disambiguated(tmp_path, make_source):
    for top in ("a", "b"):
        make_source(tmp_path / top / "train", ["car"], [(20, 10)])
    (tmp_path / "list.txt").write_text("a/train\nb/train\n")
    mp = tmp_path / "m.json"
    mp.write_text('{"car": "car"}')
    s = kitti_to_coco_shards(tmp_path / "list.txt", tmp_path / "out", "images", "labels",
                             num_shards=1, mapping_path=mp)
    assert [p.parent.name for p in s.files] == ["a_train", "b_train"]


# --- bad inputs: every one fails before anything is written -------------------------------


def _assert_nothing_written(cfg):
    out = Path(cfg.results_dir)
    assert not out.exists() or not any(out.rglob("*"))


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda c, t: {"input_source": str(t / "missing.txt")}, r"input_source: .*missing\.txt does not exist"),
        (lambda c, t: {"mapping_path": str(t / "nomap.json")}, r"mapping_path: .*nomap\.json does not exist"),
        (lambda c, t: {"image_dir_name": "imgs"}, r"image_dir_name: .*imgs .*does not exist"),
        (lambda c, t: {"label_dir_name": "lbls"}, r"label_dir_name: .*lbls .*does not exist"),
        (lambda c, t: {"num_shards": 0}, r"num_shards: got 0; expected an integer > 0"),
        (lambda c, t: {"num_partitions": -1}, r"num_partitions: got -1"),
    ],
)
def test_bad_spec_values(convert_cfg, tmp_path, change, pattern):
    cfg = _cfg(convert_cfg, **change(convert_cfg, tmp_path))
    with pytest.raises(TaoUserError, match=pattern):
        convert(cfg)
    _assert_nothing_written(cfg)


def test_missing_source_folder_names_line(convert_cfg):
    src = Path(convert_cfg.input_source)
    src.write_text(src.read_text() + "no/such/folder\n")
    with pytest.raises(TaoUserError, match=r"sequence\.txt:3: data source folder .*no/such/folder does not exist"):
        convert(convert_cfg)
    _assert_nothing_written(convert_cfg)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [("{not json", "is not valid JSON"), ('["car"]', "expected a non-empty JSON object"),
     ("{}", "expected a non-empty JSON object"), ('{"car": 1}', "non-empty string")],
)
def test_bad_mapping_json(convert_cfg, text, pattern):
    Path(convert_cfg.mapping_path).write_text(text)
    with pytest.raises(TaoUserError, match=pattern) as e:
        convert(convert_cfg)
    assert "mapping.json" in str(e.value)
    _assert_nothing_written(convert_cfg)


def test_bad_label_in_last_source_writes_nothing(tmp_path, make_source):
    make_source(tmp_path / "a", ["car"], [(20, 10)] * 2)
    make_source(tmp_path / "b", ["car"], [(20, 10)] * 2)
    (tmp_path / "b" / "labels" / "img001.txt").write_text("car 1 2 3\n")
    (tmp_path / "list.txt").write_text("a\nb\n")
    with pytest.raises(TaoUserError, match=r"img001\.txt:1: found 4 fields"):
        kitti_to_coco_shards(tmp_path / "list.txt", tmp_path / "out", "images", "labels",
                             mapping_path=None)
    assert not (tmp_path / "out").exists()


def test_missing_label_file(tmp_path, make_source):
    make_source(tmp_path / "a", ["car"], [(20, 10)] * 2)
    (tmp_path / "a" / "labels" / "img001.txt").unlink()
    (tmp_path / "list.txt").write_text("a\n")
    with pytest.raises(TaoUserError, match=r"missing KITTI label files for 1 images: img001\.txt"):
        kitti_to_coco_shards(tmp_path / "list.txt", tmp_path / "out", "images", "labels")
    assert not (tmp_path / "out").exists()


def test_empty_input_source(tmp_path):
    (tmp_path / "list.txt").write_text("# nothing\n\n")
    with pytest.raises(TaoUserError, match="lists no data source folders"):
        kitti_to_coco_shards(tmp_path / "list.txt", tmp_path / "out", "images", "labels")
