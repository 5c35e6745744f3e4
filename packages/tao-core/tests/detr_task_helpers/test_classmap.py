"""tao_core.data.classmap: the classmap file and class names by category id (PyTorch and deploy tasks)."""

import json
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from tao_core.data.classmap import label_names, names_by_id, read_classmap
from tao_core.errors import TaoUserError


def test_read_classmap_strips_and_drops_trailing_blank_lines(tmp_path):
    path = tmp_path / "classmap.txt"
    path.write_text("  raccoon \r\nperson\n\n\n", encoding="utf-8")
    assert read_classmap(path) == ["raccoon", "person"]
    assert read_classmap(str(path)) == ["raccoon", "person"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "one class name per line"),
        ("\n\n", "one class name per line"),
        ("cat\n\ndog\n", "one class name per line, no blanks"),
        (b"\xff\xfe\x00c\x00a\x00t", "not a UTF-8 text file"),
    ],
)
def test_bad_classmap_file_is_a_user_error(tmp_path, content, message):
    path = tmp_path / "classmap.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TaoUserError, match=message) as err:
        read_classmap(path)
    assert "dataset.infer_data_sources.classmap" in str(err.value) and str(path) in str(err.value)


def test_missing_directory_and_unset_classmap_are_user_errors(tmp_path):
    with pytest.raises(TaoUserError, match="does not exist"):
        read_classmap(tmp_path / "nope.txt")
    with pytest.raises(TaoUserError, match="is a directory"):
        read_classmap(tmp_path)
    for unset in (None, ""):
        with pytest.raises(TaoUserError, match="classmap: not set"):
            read_classmap(unset)


def _coco(path, categories):
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    return str(path)


def _cfg(num_classes=3, **dataset):
    return OmegaConf.create({"dataset": {"num_classes": num_classes, **dataset}})


def test_names_by_id_prefers_test_then_val_then_train_json(tmp_path):
    test = _coco(tmp_path / "test.json", [{"id": 1, "name": "from_test"}])
    val = _coco(tmp_path / "val.json", [{"id": 1, "name": "from_val"}])
    train = _coco(tmp_path / "train.json", [{"id": 2, "name": "from_train"}])
    src = lambda j: {"image_dir": str(tmp_path), "json_file": j}  # noqa: E731
    cfg = _cfg(test_data_sources=src(test), val_data_sources=[src(val)], train_data_sources=[src(train)])
    assert names_by_id(cfg) == {1: "from_test"}
    cfg = _cfg(val_data_sources=[src(str(tmp_path / "missing.json")), src(val)], train_data_sources=[src(train)])
    assert names_by_id(cfg) == {1: "from_val"}  # a json that does not exist is skipped
    assert names_by_id(_cfg(train_data_sources=[src(train)])) == {2: "from_train"}


def test_names_by_id_falls_back_to_the_classmap_then_to_nothing(tmp_path):
    classmap = tmp_path / "classmap.txt"
    classmap.write_text("cat\ndog\n")
    assert names_by_id(_cfg(infer_data_sources={"classmap": str(classmap)})) == {1: "cat", 2: "dog"}
    assert names_by_id(_cfg(infer_data_sources={"classmap": str(tmp_path / "gone.txt")})) == {}
    assert names_by_id(_cfg()) == {}
    # attribute-style config objects (tests, Python callers) read the same way
    ns = SimpleNamespace(dataset=SimpleNamespace(num_classes=3, infer_data_sources=SimpleNamespace(classmap=str(classmap))))
    assert names_by_id(ns) == {1: "cat", 2: "dog"}


def test_label_names_background_and_unknown(tmp_path):
    classmap = tmp_path / "classmap.txt"
    classmap.write_text("cat\ndog\n")
    assert label_names(_cfg(num_classes=4, infer_data_sources={"classmap": str(classmap)})) == [
        "background", "cat", "dog", "unknown",
    ]  # fmt: skip
    assert label_names(_cfg(num_classes=2)) == ["background", "unknown"]
    zero_based = _coco(tmp_path / "zero.json", [{"id": 0, "name": "a"}, {"id": 2, "name": "c"}])
    cfg = _cfg(num_classes=3, test_data_sources={"image_dir": str(tmp_path), "json_file": zero_based})
    assert label_names(cfg) == ["a", "unknown", "c"]  # id 0 is a class: no background
