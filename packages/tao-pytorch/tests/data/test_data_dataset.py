"""CocoDetectionDataset, ImageListDataset and collate_detr on real (raccoon) or generated data."""

import pickle
from multiprocessing.reduction import ForkingPickler
from types import SimpleNamespace

import numpy as np
import torch

from tao_core.data.coco import load_coco_sources
from tao_core.data.images import list_images
from tao_pytorch.detr.data import transforms as T
from tao_pytorch.detr.data.dataset import (
    CocoDetectionDataset,
    ImageListDataset,
    SharedRecords,
    collate_detr,
    with_mask_channel,
)


def _eval_tfm(small_aug, **kw):
    return T.build_transforms(SimpleNamespace(**dict(small_aug, **kw)), "val")


def test_items_shapes_and_boxes(coco_sources, small_aug):
    index = load_coco_sources(coco_sources["train"], num_classes=2)
    ds = CocoDetectionDataset(index, _eval_tfm(small_aug, fixed_padding=False))
    assert len(ds) == len(index)
    for i in range(0, len(ds), max(1, len(ds) // 12)):
        image, tgt = ds[i]
        rec = index[i]
        assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
        assert tuple(image.shape[1:]) == tuple(tgt["size"].tolist())
        assert tgt["orig_size"].tolist() == [rec["height"], rec["width"]]
        assert min(image.shape[1:]) <= 128 and max(image.shape[1:]) <= 200
        assert tgt["boxes"].shape == (len(rec["boxes"]), 4) and tgt["boxes"].dtype == torch.float32
        assert ((tgt["boxes"] >= 0) & (tgt["boxes"] <= 1)).all()
        assert tgt["labels"].dtype == torch.int64 and (tgt["labels"] == 1).all()  # category id = class index
        assert tgt["image_id"].tolist() == [rec["image_id"]]
        # cxcywh normalised by the resized size equals the record's xyxy normalised by the original size.
        b = tgt["boxes"].double()
        xyxy = torch.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)
        ref = torch.from_numpy(rec["boxes"]).double() / torch.tensor([rec["width"], rec["height"]] * 2)
        torch.testing.assert_close(xyxy, ref, atol=2e-6, rtol=0)


def test_default_transform_is_plain_normalize(coco_sources):
    index = load_coco_sources(coco_sources["val"], num_classes=2)
    image, tgt = CocoDetectionDataset(index)[0]
    assert tuple(image.shape[1:]) == (index[0]["height"], index[0]["width"])


def test_grayscale_images_become_three_channels(coco_sources, small_aug):
    index = load_coco_sources(coco_sources["train"], num_classes=2)
    ds = CocoDetectionDataset(index, _eval_tfm(small_aug, fixed_padding=False))
    gray = [i for i, rec in enumerate(index) if rec["file_name"] in ("raccoon-150.jpg", "img2.jpg")]
    assert gray
    image, _ = ds[gray[0]]
    assert image.shape[0] == 3
    torch.testing.assert_close(image[0] * 0.229 + 0.485, image[1] * 0.224 + 0.456, atol=1e-5, rtol=0)


def test_collate_pads_and_masks():
    a = (torch.ones(3, 4, 6), {"size": torch.tensor([4, 6])})
    b = (torch.full((3, 5, 3), 2.0), {"size": torch.tensor([5, 3])})
    images, mask, targets = collate_detr([a, b])
    assert images.shape == (2, 3, 5, 6) and mask.shape == (2, 5, 6) and mask.dtype == torch.bool
    assert not mask[0, :4].any() and mask[0, 4].all()
    assert not mask[1, :, :3].any() and mask[1, :, 3:].all()
    assert images[0, :, 4].abs().sum() == 0 and images[1, :, :, 3:].abs().sum() == 0
    assert targets[1] is b[1]
    four = with_mask_channel(images, mask)
    assert four.shape == (2, 4, 5, 6) and torch.equal(four[:, 3].bool(), mask)


def test_collate_masks_fixed_padding_too(coco_sources, small_aug):
    index = load_coco_sources(coco_sources["val"], num_classes=2)
    ds = CocoDetectionDataset(index, _eval_tfm(small_aug))  # fixed_padding on
    batch = [ds[i] for i in range(min(4, len(ds)))]
    images, mask, targets = collate_detr(batch)
    for k, (_, tgt) in enumerate(batch):
        h, w = tgt["size"].tolist()
        assert not mask[k, :h, :w].any()
        assert int(mask[k].sum()) == mask.shape[1] * mask.shape[2] - h * w


def test_serialized_index_lives_in_shared_memory(coco_sources):
    index = load_coco_sources(coco_sources["train"], num_classes=2, dataset_type="serialized")
    ds = CocoDetectionDataset(index, T.Normalize())
    assert isinstance(ds.records, SharedRecords)
    buf, ends = ds.records.tensors
    assert buf.is_shared() and ends.is_shared()
    # Pickled the way DataLoader hands a dataset to spawned workers: a handle, not the bytes.
    payload = bytes(ForkingPickler.dumps(ds))
    assert len(payload) < buf.numel() / 2 or buf.numel() < 4096
    rebuilt = pickle.loads(payload)
    assert len(rebuilt) == len(ds)
    np.testing.assert_array_equal(rebuilt.records[3]["boxes"], index[3]["boxes"])
    # default dataset_type stays a plain list
    assert isinstance(CocoDetectionDataset(load_coco_sources(coco_sources["val"], num_classes=2)).records, list)


def test_source_ids(coco_sources):
    index = load_coco_sources(coco_sources["train"] + coco_sources["val"], num_classes=2, dataset_type="serialized")
    ids = CocoDetectionDataset(index).source_ids()
    n_train = len(load_coco_sources(coco_sources["train"], num_classes=2, check_images=False))
    assert (ids[:n_train] == 0).all() and (ids[n_train:] == 1).all()


def test_image_list_dataset(coco_sources, small_aug):
    paths = list_images(coco_sources["val"][0]["image_dir"])
    assert paths == sorted(paths) and len(paths) > 0
    ds = ImageListDataset(paths[:2], _eval_tfm(small_aug))
    image, tgt = ds[1]
    assert image.shape[0] == 3 and tgt["path"] == paths[1] and tgt["image_id"].tolist() == [2]
    images, mask, targets = collate_detr([ds[0], ds[1]])
    assert images.shape[0] == 2 and [t["path"] for t in targets] == paths[:2]
