"""tao_core.data.images.list_images: the inference image list."""

import pytest

from tao_core.data.images import list_images
from tao_core.errors import TaoUserError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return str(path)


def test_recursive_case_insensitive_sorted_per_directory(tmp_path):
    b = [_touch(tmp_path / "b" / n) for n in ("z.JPG", "a.png", "sub/m.bmp", "k.jpeg")]
    _touch(tmp_path / "b" / "notes.txt")
    a = [_touch(tmp_path / "a" / "y.jpg")]
    assert list_images(str(tmp_path / "b")) == sorted(b)
    assert list_images([tmp_path / "b", str(tmp_path / "a")]) == sorted(b) + a  # directories in the order given
    assert list_images([]) == []


def test_missing_or_empty_directory_names_the_field(tmp_path):
    with pytest.raises(TaoUserError, match=r"dataset.infer_data_sources.image_dir: .*gone is not a directory"):
        list_images(tmp_path / "gone")
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "empty" / "a.txt")
    with pytest.raises(TaoUserError, match=r"my.field: no .jpg/.jpeg/.png/.bmp images in .*empty"):
        list_images([tmp_path / "empty"], field="my.field")
