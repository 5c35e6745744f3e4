"""SerializedList and dataset_type=serialized: same records as the default index, shareable by fork."""

import multiprocessing as mp
import pickle

import numpy as np
import pytest

from tao_core.data.coco import load_coco_sources
from tao_core.data.serialized import SerializedList


def _same(a: dict, b: dict) -> bool:
    if list(a) != list(b):
        return False
    for k in a:
        if isinstance(a[k], np.ndarray):
            if not (isinstance(b[k], np.ndarray) and a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                    and np.array_equal(a[k], b[k])):
                return False
        elif a[k] != b[k] or type(a[k]) is not type(b[k]):
            return False
    return True


def _sources(shared_data, coco):
    if shared_data is not None:
        root = shared_data / "bccd"
        return [{"image_dir": str(root / s / "images"), "json_file": str(root / "annotations" / f"instances_{s}.json")}
                for s in ("train", "val")], 4
    poly = [[1, 1, 10, 1, 10, 10]]
    src = coco.make(images=[(1, "a.jpg", 64, 48), (2, "b.jpg", 32, 32), (3, "c.jpg", 16, 16)],
                    anns=[{}, {"image_id": 2, "segmentation": poly}, {"image_id": 2, "category_id": 2}],
                    categories=[(1, "cat"), (2, "dog")])
    return [src], 3


def test_serialized_equals_default_record_by_record(shared_data, coco):
    sources, num_classes = _sources(shared_data, coco)
    plain = load_coco_sources(sources, num_classes)
    ser = load_coco_sources(sources, num_classes, dataset_type="serialized")
    assert plain.dataset_type == "default" and ser.dataset_type == "serialized"
    assert isinstance(ser.records, SerializedList) and isinstance(plain.records, list)
    assert len(ser) == len(plain) and ser.categories == plain.categories and ser.stats == plain.stats
    for a, b in zip(plain, ser, strict=True):
        assert _same(a, b), a["image_id"]
    assert _same(ser[-1], plain[len(plain) - 1])
    assert ser.to_coco_dict() == plain.to_coco_dict()


def test_records_are_fresh_writable_copies():
    lst = SerializedList([{"boxes": np.ones((2, 4), np.float32), "name": "x"}])
    rec = lst[0]
    rec["boxes"][0, 0] = 5  # transforms modify boxes in place
    assert lst[0]["boxes"][0, 0] == 1


def test_any_picklable_record_and_bounds():
    items = [1, "two", None, {"a": [1, 2]}, {"arr": np.arange(3, dtype=np.int16), "k": (1, 2)}, np.zeros(2)]
    lst = SerializedList(items)
    assert len(lst) == 6 and lst[1] == "two" and lst[2] is None and lst[3] == {"a": [1, 2]}
    assert lst[4]["arr"].dtype == np.int16 and lst[4]["k"] == (1, 2) and lst[-1].tolist() == [0, 0]
    with pytest.raises(IndexError):
        lst[6]
    with pytest.raises(TypeError):
        lst[1:2]
    assert len(SerializedList([])) == 0


def test_pickle_and_from_buffers_roundtrip():
    lst = SerializedList([{"i": i, "v": np.full(i, i)} for i in range(5)])
    again = pickle.loads(pickle.dumps(lst))
    buf, ends = lst.buffers
    wrapped = SerializedList.from_buffers(buf.copy(), ends.copy())
    for i in range(5):
        assert again[i]["i"] == wrapped[i]["i"] == i and wrapped[i]["v"].tolist() == [i] * i
    with pytest.raises(ValueError, match="offsets end at"):
        SerializedList.from_buffers(buf[:-1], ends)


def _child(lst, q):
    q.put(sum(int(lst[i]["v"].sum()) for i in range(len(lst))))


def test_forked_worker_reads_the_parent_buffer():
    lst = SerializedList([{"v": np.full(3, i)} for i in range(100)])
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(lst, q))
    p.start()
    assert q.get(timeout=30) == 3 * sum(range(100))
    p.join(timeout=30)
    assert p.exitcode == 0
