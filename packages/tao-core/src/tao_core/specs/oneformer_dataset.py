"""OneFormer `dataset:` section (seed 004, "Data Config", "Augmentation Config", "Dataset Configuration").

Seed 004 supports three annotation formats, one per segmentation task, and a split
(`dataset.train/val/test`) does not name its format: it follows from the files given
(`split_format`):
  - semantic: `annotations` is a JSON-lines file (.jsonl), one `{"img": ..., "segm": ...}` per line;
  - panoptic: `annotations` is a COCO panoptic .json and `panoptic` the folder of its PNG masks;
  - instance: `annotations` is a COCO .json (polygons / RLE) and `panoptic` is unset.
"""

from dataclasses import dataclass
from typing import List, Optional

from tao_core.spec.access import spec_get
from tao_core.spec.fields import spec_field

DATASET_TYPES = ["default", "serialized"]


@dataclass
class SplitConfig:
    images: Optional[str] = spec_field(None, "Path of the image directory (root of relative JSONL paths).")
    annotations: Optional[str] = spec_field(
        None, "Path of the annotation file: .jsonl (semantic), COCO panoptic .json or COCO .json (instance)."
    )
    panoptic: Optional[str] = spec_field(None, "Path of the panoptic PNG directory (COCO panoptic only).")
    batch_size: int = spec_field(1, "Batch size (per GPU).", gt=0)
    num_workers: int = spec_field(1, "Number of workers to process the input data.", ge=0)


@dataclass
class AugmentationConfig:
    train_min_size: List[int] = spec_field([800], "Sizes of the shorter side to pick from at random for training data.", item_gt=0)
    # The seed's description reads "Minimum random crop size"; it is the cap on the longer side.
    train_max_size: int = spec_field(1333, "Maximum size of the longer side for training data.", gt=0)
    train_crop_size: List[int] = spec_field([1024, 1024], "Random crop size for training data in [H, W].", item_gt=0, length=2)
    test_min_size: int = spec_field(800, "Minimum resize size for test data.", gt=0)
    test_max_size: int = spec_field(1333, "Maximum resize size for test data.", gt=0)
    fixed_padding: bool = spec_field(
        False, "Pad images to a fixed size before batching (steadies CPU memory with random resize/crop)."
    )


@dataclass
class TaskProbConfig:
    # TAO's dataset.task_prob_train: the share of training samples given each task's targets
    # (renormalised over the tasks a split's format can give; see tao_pytorch.oneformer.data).
    semantic: float = spec_field(0.33, "Probability of the semantic task for a training sample.", ge=0, le=1)
    instance: float = spec_field(0.66, "Probability of the instance task for a training sample.", ge=0, le=1)
    panoptic: float = spec_field(0.01, "Probability of the panoptic task for a training sample.", ge=0, le=1)


@dataclass
class DatasetConfig:
    train: SplitConfig = spec_field(SplitConfig, "Train dataset configuration.")
    val: SplitConfig = spec_field(SplitConfig, "Validation dataset configuration.")
    test: SplitConfig = spec_field(SplitConfig, "Test dataset configuration.")
    pixel_mean: List[float] = spec_field([123.675, 116.28, 103.53], "Image mean in RGB order.", length=3)
    pixel_std: List[float] = spec_field([58.395, 57.12, 57.375], "Image standard deviation in RGB order.", length=3, item_gt=0)
    augmentation: AugmentationConfig = spec_field(AugmentationConfig, "Augmentation settings.")
    contiguous_id: bool = spec_field(True, "Map category ids to contiguous ids 0..num_classes-1.")
    label_map: Optional[str] = spec_field(None, "Path of the label mapping file.")
    workers: int = spec_field(8, "Number of workers to load data for each GPU.", ge=0)
    dataset_type: str = spec_field(
        "default",
        "'serialized' shares the COCO-based annotations across loader processes instead of copying them.",
        options=DATASET_TYPES,
    )
    # Large-scale jittering: resize by a random factor in [min_scale, max_scale] and crop image_size.
    image_size: int = spec_field(1024, "Square crop size of the large-scale-jitter augmentation.", gt=0)
    min_scale: float = spec_field(0.1, "Smallest large-scale-jitter factor.", gt=0)
    max_scale: float = spec_field(2.0, "Largest large-scale-jitter factor.", gt=0)
    cutmix_prob: float = spec_field(0.0, "Probability of CutMix on a training sample.", ge=0, le=1)
    task_prob_train: TaskProbConfig = spec_field(TaskProbConfig, "Task probabilities of the training samples (TAO).")
    task_seq_len: int = spec_field(77, "Token length of the task text.", gt=0)
    max_seq_len: int = spec_field(77, "Token length of the text queries.", gt=0)


def split_format(split) -> Optional[str]:
    """'semantic' | 'panoptic' | 'instance' from a split's files, or None when it has no annotations.

    Only the file names are looked at: specs are checked before any data is read.
    """
    annotations = spec_get(split, "annotations")
    if not annotations:
        return None
    if str(annotations).lower().endswith(".jsonl"):
        return "semantic"
    return "panoptic" if spec_get(split, "panoptic") else "instance"
