"""KITTI label reading, writing and class mapping."""

from collections import Counter
from pathlib import Path

import pytest

from tao_core.data.kitti import KittiObject, map_classes, read_kitti_labels, write_kitti_labels
from tao_core.data.kitti_to_coco import DEFAULT_TARGET_CLASS_MAPPING
from tao_core.errors import TaoUserError

GT_LINE = "Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01\n"


@pytest.fixture
def kitti_labels(shared_data):
    if shared_data is None or not (shared_data / "kitti_sample").is_dir():
        pytest.skip("shared/data/kitti_sample not available")
    return shared_data / "kitti_sample" / "training" / "label_2"


def test_kitti_sample_counts_match_readme(kitti_labels):
    per_frame = {p.stem: read_kitti_labels(p) for p in sorted(kitti_labels.glob("*.txt"))}
    assert {k: len(v) for k, v in per_frame.items()} == {
        "000000": 1, "000001": 7, "000002": 2, "000003": 3, "000004": 7, "000005": 5,
    }
    classes = Counter(o.type for objs in per_frame.values() for o in objs)
    # Names are lower-cased on read, as TAO's converters do.
    assert classes == {"car": 5, "pedestrian": 2, "truck": 1, "cyclist": 1, "misc": 1, "dontcare": 15}
    assert all(o.score is None for objs in per_frame.values() for o in objs)


def test_kitti_sample_values_match_file(kitti_labels):
    path = kitti_labels / "000000.txt"
    (obj,) = read_kitti_labels(path)
    raw = path.read_text().split()
    assert obj.type == raw[0].lower() == "pedestrian"
    assert obj.truncated == 0.0 and obj.occluded == 0 and obj.alpha == -0.20
    assert obj.bbox == (712.40, 143.00, 810.73, 307.92)
    assert obj.dimensions == (1.89, 0.48, 1.20)
    assert obj.location == (1.84, 1.47, 8.41)
    assert obj.rotation_y == 0.01
    # Every line parses back to the exact numbers of its text.
    for p in kitti_labels.glob("*.txt"):
        lines = p.read_text().splitlines()
        for line, o in zip(lines, read_kitti_labels(p), strict=True):
            f = [float(v) for v in line.split()[1:]]
            assert (o.truncated, o.occluded, o.alpha, *o.bbox) == tuple(f[:7])
            assert (*o.dimensions, *o.location, o.rotation_y) == tuple(f[7:])


def test_dontcare_row_and_occlusion(kitti_labels):
    objs = [o for p in kitti_labels.glob("*.txt") for o in read_kitti_labels(p)]
    dontcare = [o for o in objs if o.type == "dontcare"]
    assert all(o.truncated == -1 and o.occluded == -1 and o.alpha == -10 for o in dontcare)
    assert all(o.location == (-1000, -1000, -1000) and o.rotation_y == -10 for o in dontcare)
    cyclists = [o for o in read_kitti_labels(kitti_labels / "000001.txt") if o.type == "cyclist"]
    assert [o.occluded for o in cyclists] == [3]


def test_keep_case_when_asked(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text(GT_LINE)
    assert read_kitti_labels(p, lowercase=False)[0].type == "Pedestrian"
    assert read_kitti_labels(p)[0].type == "pedestrian"


def test_round_trip_with_scores(tmp_path):
    objs = [
        KittiObject(type="car", bbox=(1.5, 2.25, 100.125, 50.0), score=0.875),
        KittiObject(type="person", bbox=(0.0, 0.0, 10.0, 20.0), score=0.5),
        KittiObject(type="dontcare", bbox=(3.0, 4.0, 5.0, 6.0), truncated=-1.0, occluded=-1,
                    alpha=-10.0, dimensions=(-1.0, -1.0, -1.0),
                    location=(-1000.0, -1000.0, -1000.0), rotation_y=-10.0),
    ]
    p = tmp_path / "sub" / "x.txt"
    write_kitti_labels(p, objs)
    lines = p.read_text().splitlines()
    assert lines[0] == "car 0.00 0 0.00 1.500 2.250 100.125 50.000 0.00 0.00 0.00 0.00 0.00 0.00 0.00 0.875"
    assert [len(line.split()) for line in lines] == [16, 16, 15]
    assert read_kitti_labels(p) == objs
    assert [q.name for q in p.parent.iterdir()] == ["x.txt"]  # no temporary file left behind


def test_write_empty_and_reject_bad_name(tmp_path):
    p = tmp_path / "empty.txt"
    write_kitti_labels(p, [])
    assert p.read_text() == "" and read_kitti_labels(p) == []
    with pytest.raises(TaoUserError, match="whitespace"):
        write_kitti_labels(tmp_path / "b.txt", [KittiObject(type="person group", bbox=(0, 0, 1, 1))])


def test_blank_lines_skipped(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("\n" + GT_LINE + "   \n" + GT_LINE)
    assert len(read_kitti_labels(p)) == 2


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("car 0 0 0 1 2 3 4\n", r"found 8 fields; expected 15 .*16 with a trailing score"),
        (GT_LINE.strip() + " 0.9 7\n", "found 17 fields"),
        (GT_LINE.replace("712.40", "abc"), r"field 'x1' is 'abc'; expected a number"),
        (GT_LINE.replace(" 0 -0.20", " 1.5 -0.20"), r"field 'occluded' is '1.5'; expected an integer"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, pattern):
    p = tmp_path / "bad.txt"
    p.write_text(GT_LINE + line)
    with pytest.raises(TaoUserError, match=pattern) as e:
        read_kitti_labels(p)
    assert f"{p}:2:" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(TaoUserError, match="not found"):
        read_kitti_labels(tmp_path / "nope.txt")


def _objs(*names):
    return [KittiObject(type=n, bbox=(0, 0, 1, 1)) for n in names]


def test_map_classes_case_insensitive_and_drops_unmapped():
    mapped = map_classes(_objs("car", "Van", "pedestrian", "dontcare"), {"Car": "vehicle", "van": "vehicle",
                                                                          "pedestrian": "Person"})
    assert [o.type for o in mapped] == ["vehicle", "vehicle", "Person"]  # targets keep their spelling


def test_default_mapping_groups_people_and_bags():
    mapped = map_classes(_objs("person", "rider", "person group", "rollingbag", "face", "car"),
                         DEFAULT_TARGET_CLASS_MAPPING)
    assert [o.type for o in mapped] == ["person", "person", "person", "bag", "face"]


def test_conflicting_case_keys_rejected():
    with pytest.raises(TaoUserError, match="compared lower-cased"):
        map_classes(_objs("car"), {"Car": "car", "car": "vehicle"})


def test_mapping_needs_strings():
    with pytest.raises(TaoUserError, match="non-empty string"):
        map_classes(_objs("car"), {"car": 3})


def test_objects_are_paths_agnostic(tmp_path):
    # str and Path both accepted.
    p = tmp_path / "a.txt"
    p.write_text(GT_LINE)
    assert read_kitti_labels(str(p)) == read_kitti_labels(Path(p))
