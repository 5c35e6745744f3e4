"""Helpers for the COCO reader tests: small COCO datasets written into tmp_path with Pillow."""

import json

import numpy as np
import pytest
from PIL import Image


class CocoFactory:
    """Writes images + one COCO json; `source()` returns the {image_dir, json_file} dict."""

    def __init__(self, root):
        self.root = root

    def make(self, name="set", images=((1, "a.jpg", 64, 48),), anns=(), categories=((1, "cat"),),
             write_images=True, raw=None):
        """images: (id, file_name, width, height); anns: dicts merged over sane defaults."""
        folder = self.root / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        if write_images:
            for _, fname, w, h in images:
                Image.fromarray(np.full((h, w, 3), 127, np.uint8)).save(folder / "images" / fname)
        data = {
            "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
            "annotations": [{"id": k + 1, "image_id": images[0][0], "category_id": 1, "bbox": [1, 2, 10, 12],
                             "area": 120, "iscrowd": 0, **a} for k, a in enumerate(anns)],
            "categories": [{"id": c, "name": n} for c, n in categories],
        }
        json_file = folder / "instances.json"
        json_file.write_text(raw if raw is not None else json.dumps(data, indent=1))
        return {"image_dir": str(folder / "images"), "json_file": str(json_file)}


@pytest.fixture
def coco(tmp_path):
    return CocoFactory(tmp_path)
