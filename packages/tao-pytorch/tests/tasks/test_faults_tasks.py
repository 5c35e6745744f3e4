"""Checkpoint tasks facing bad input: unreadable inference images are skipped and reported, a
second inference into the same folder replaces the first as a whole, evaluate refuses to score
nothing, and a file that is no checkpoint is one line that never suggests unsafe loading."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from detr_task_helpers import status_lines

from tao_core.errors import TaoUserError
from tao_core.testing import file_modes_enforced
from tao_pytorch.dino.cli import CLI


def _infer_spec(spec, tmp_path, images: list[Path], **inference):
    folder = tmp_path / "images"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    spec_file, results = spec("dino", inference={"conf_threshold": 0.0, **inference})
    return spec_file, results, folder


def _run_inference(spec_file, folder):
    return CLI.run("inference", ["-e", str(spec_file), f"dataset.infer_data_sources.image_dir={folder}"])


def _stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.iterdir())


def test_an_unreadable_image_is_skipped_and_reported(spec, task_data, tmp_path):
    good = sorted(Path(task_data["infer_dir"]).iterdir())
    broken = tmp_path / "src" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"\x00not a jpeg" * 10)
    spec_file, results, folder = _infer_spec(spec, tmp_path, [*good, broken])
    assert _run_inference(spec_file, folder) == 0
    out = results / "inference"
    assert _stems(out / "labels") == sorted(p.stem for p in good)
    lines = status_lines(results, "inference")
    skipped = [r for r in lines if "skipped" in r]
    assert len(skipped) == 1 and skipped[0]["skipped"] == {"count": 1, "files": [str(folder / "broken.jpg")]}
    assert f"skipped 1 of {len(good) + 1} images" in skipped[0]["message"]
    assert lines[-1]["status"] == "SUCCESS"
    assert "broken.jpg" in (out / "inference.log").read_text()


def test_nothing_readable_is_an_error_and_keeps_the_previous_outputs(spec, task_data, tmp_path):
    good = sorted(Path(task_data["infer_dir"]).iterdir())
    spec_file, results, folder = _infer_spec(spec, tmp_path, good)
    assert _run_inference(spec_file, folder) == 0
    before = _stems(results / "inference" / "labels")
    for image in folder.iterdir():
        image.write_bytes(b"\x00" * 50)
    with pytest.raises(TaoUserError, match=rf"none of the {len(good)} images could be read"):
        _run_inference(spec_file, folder)
    assert _stems(results / "inference" / "labels") == before


def test_a_second_inference_replaces_the_first_as_a_whole(spec, task_data, tmp_path):
    images = sorted(Path(task_data["infer_dir"]).iterdir())
    spec_file, results, folder = _infer_spec(spec, tmp_path, images)
    assert _run_inference(spec_file, folder) == 0
    renamed = tmp_path / "src2"
    renamed.mkdir()
    shutil.copy(images[0], renamed / "only.jpg")
    assert _run_inference(spec_file, renamed) == 0
    out = results / "inference"
    assert _stems(out / "labels") == ["only"] and _stems(out / "images_annotated") == ["only"]
    assert not [p for p in out.iterdir() if p.name.startswith(".tao-") and p.name != ".tao-outputs.json"]


def test_evaluate_with_every_box_dropped_is_an_error(spec, task_data, tmp_path):
    data = json.loads(Path(task_data["json_file"]).read_text())
    for ann in data["annotations"]:
        ann["bbox"] = [ann["bbox"][0], ann["bbox"][1], 0, 0]
    bad = tmp_path / "no_boxes.json"
    bad.write_text(json.dumps(data))
    spec_file, _ = spec("dino")
    argv = ["-e", str(spec_file), f"dataset.val_data_sources=[{{image_dir: {task_data['image_dir']}, json_file: {bad}}}]"]
    with pytest.raises(TaoUserError, match="every ground-truth box was dropped .*non-positive width or height"):
        CLI.run("evaluate", argv)


def test_evaluate_on_no_image_is_an_error(spec, task_data, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "raccoon"}]}))
    spec_file, _ = spec("dino")
    argv = ["-e", str(spec_file), f"dataset.val_data_sources=[{{image_dir: {task_data['image_dir']}, json_file: {empty}}}]"]
    with pytest.raises(TaoUserError, match=r"empty.json: lists no images"):
        CLI.run("evaluate", argv)


class _NotWeights:
    pass


@pytest.mark.parametrize("kind", ["random", "pickle", "directory"])
def test_a_file_that_is_no_checkpoint_is_one_safe_line(spec, tmp_path, kind):
    path = tmp_path / "model.pth"
    if kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "pickle":
        torch.save({"state_dict": {}, "payload": _NotWeights()}, path)
    else:
        path.mkdir()
    spec_file, _ = spec("dino", checkpoint=path)
    with pytest.raises(TaoUserError) as err:
        CLI.run("evaluate", ["-e", str(spec_file)])
    message = str(err.value)
    assert "\n" not in message and "weights_only" not in message and str(path) in message
    expected = {"random": "not a checkpoint", "pickle": "refusing to load", "directory": "is a directory"}[kind]
    assert expected in message


def test_unreadable_checkpoint_is_one_line(spec, tmp_path, checkpoints):
    path = tmp_path / "locked.pth"
    shutil.copy(checkpoints("dino"), path)
    os.chmod(path, 0)
    spec_file, _ = spec("dino", checkpoint=path)
    # file_modes_enforced: as root (CI) the mode-0 file is unreadable too.
    with file_modes_enforced(), pytest.raises(TaoUserError, match=r"locked.pth cannot be read: permission denied"):
        CLI.run("evaluate", ["-e", str(spec_file)])
