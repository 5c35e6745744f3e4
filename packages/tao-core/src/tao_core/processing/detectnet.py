"""DetectNet_v2 post-processing in numpy: grid decode, then DBSCAN / NMS / HYBRID clustering.

Works on the raw outputs of any runtime (Keras, ONNX Runtime, TensorRT, a Triton or DeepStream
output tensor): `output_cov` [N, C, H, W] (sigmoid coverage per class and grid cell) and
`output_bbox` [N, 4*C, H, W] (per class the four distances L, T, R, B, class-major as the
DeepStream parser reads them). A single frame may drop the batch axis; `layout="NHWC"` takes
channels-last tensors.

    from tao_core.processing.detectnet import ClusteringParams, postprocess_detectnet
    dets = postprocess_detectnet(cov, bbox, ["car", "person"], image_size=(384, 1248))
    for d in dets[0]:
        print(d.class_name, d.bbox, d.confidence)

Formulas (TAO's `bbox_objective.py` / DeepStream's detectnet parser; shared/research/anchors-tao.md
§4.3, §4.5): with stride s = image_w / grid_w, the anchor of cell (i, j) is
gx = i*s + offset, gy = j*s + offset in input pixels, and

    x1 = clip(gx - scale*L, 0, W)    y1 = clip(gy - scale*T, 0, H)
    x2 = clip(gx + scale*R, x1, W)   y2 = clip(gy + scale*B, y1, H)

(`encode_bbox_targets` is the inverse, used for training targets). Clustering per class:

- cells with coverage > `coverage_threshold` are candidates;
- DBSCAN (scikit-learn, precomputed distance 1 - IoU, coverage as `sample_weight`,
  min_samples = max(int(dbscan_min_samples), 1)); each cluster becomes the coverage-weighted
  mean box; confidence is the summed coverage (`aggregate_cov`) or the mean coverage
  (`mean_cov`, as the documentation describes it); clusters no taller than
  `minimum_bounding_box_height` or below `dbscan_confidence_threshold` are dropped;
- NMS: greedy on raw coverage, suppressing IoU > `nms_iou_threshold` (TAO's +1-pixel IoU),
  keeping coverage > `nms_confidence_threshold`;
- HYBRID: DBSCAN, then NMS over the candidate boxes of the surviving clusters.

Two deliberate differences from TAO, both where TAO's own code contradicts its documentation:
`mean_cov` is the plain mean (TAO computes (mean-min)/(max-min), NaN for one-box clusters),
and NMS also drops boxes no taller than `minimum_bounding_box_height` (TAO ignores it there).
Detections of a frame are sorted by descending confidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tao_core.errors import TaoUserError

ALGORITHMS = ("dbscan", "nms", "hybrid")
CONFIDENCE_MODELS = ("aggregate_cov", "mean_cov")
DEFAULT_SCALE = 35.0
DEFAULT_OFFSET = 0.5
# IoU regulariser of TAO's training/evaluation clustering (cluster.py compute_iou): keeps
# 1 - IoU finite for degenerate (zero-area) boxes.
_IOU_EPS = 1e-5


@dataclass(frozen=True)
class ClusteringParams:
    """One class's `clustering_config` (+ `confidence_model`); defaults are the documented ones."""

    coverage_threshold: float = 0.005
    minimum_bounding_box_height: float = 20.0
    algorithm: str = "dbscan"
    dbscan_eps: float = 0.13
    dbscan_min_samples: float = 1.0
    dbscan_confidence_threshold: float = 0.1
    nms_iou_threshold: float = 0.2
    nms_confidence_threshold: float = 0.0
    confidence_model: str = "aggregate_cov"

    def __post_init__(self):
        algo = str(self.algorithm).lower()
        if algo not in ALGORITHMS:
            raise TaoUserError(f"clustering_algorithm must be one of DBSCAN, NMS, HYBRID, got {self.algorithm!r}")
        object.__setattr__(self, "algorithm", algo)
        model = str(self.confidence_model or "aggregate_cov").lower()
        if model not in CONFIDENCE_MODELS:
            raise TaoUserError(f"confidence_model must be one of {CONFIDENCE_MODELS}, got {self.confidence_model!r}")
        object.__setattr__(self, "confidence_model", model)
        for name in ("coverage_threshold", "dbscan_eps", "nms_iou_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise TaoUserError(f"clustering_config.{name} must be in [0, 1], got {value!r}")

    @classmethod
    def from_proto(cls, clustering_config, confidence_model: str = "") -> ClusteringParams:
        """From a `ClusteringConfig` message (tao_core.proto.detectnet_v2.clustering_pb2).

        proto3 has no custom defaults: an unset dbscan_confidence_threshold / nms_iou_threshold
        (0.0) takes the documented default (0.1 / 0.2), as the spec loader's DEFAULTS table says.
        """
        c = clustering_config
        algo = type(c).ClusteringAlgorithm.Name(c.clustering_algorithm)
        return cls(
            coverage_threshold=c.coverage_threshold,
            minimum_bounding_box_height=float(c.minimum_bounding_box_height),
            algorithm=algo,
            dbscan_eps=c.dbscan_eps,
            dbscan_min_samples=c.dbscan_min_samples,
            dbscan_confidence_threshold=c.dbscan_confidence_threshold or 0.1,
            nms_iou_threshold=c.nms_iou_threshold or 0.2,
            nms_confidence_threshold=c.nms_confidence_threshold,
            confidence_model=confidence_model or "aggregate_cov",
        )


@dataclass
class Detection:
    """One clustered box: xyxy in input-image pixels."""

    class_name: str
    bbox: np.ndarray
    confidence: float
    coverage: float  # mean coverage of the candidates
    num_candidates: int
    candidate_boxes: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 4)))
    candidate_covs: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


# ------------------------------------------------------------------------------- grid geometry
def grid_anchors(grid_h: int, grid_w: int, image_h: int, image_w: int, offset: float = DEFAULT_OFFSET):
    """(gx [grid_w], gy [grid_h]): each cell's anchor in input pixels, i*stride + offset."""
    gx = np.arange(grid_w, dtype=np.float64) * (image_w / grid_w) + offset
    gy = np.arange(grid_h, dtype=np.float64) * (image_h / grid_h) + offset
    return gx, gy


def decode_bbox_grid(
    bbox: np.ndarray, image_size: tuple[int, int], scale: float = DEFAULT_SCALE, offset: float = DEFAULT_OFFSET
) -> np.ndarray:
    """Absolute boxes from an `output_bbox` tensor.

    bbox: [N, 4*C, H, W] (or [4*C, H, W]), channels per class L, T, R, B.
    image_size: (height, width) of the network input in pixels.
    Returns float32 [N, C, 4, H, W] (or [C, 4, H, W]) of x1, y1, x2, y2, clipped to the image.
    """
    bbox = np.asarray(bbox)
    single = bbox.ndim == 3
    if single:
        bbox = bbox[None]
    if bbox.ndim != 4 or bbox.shape[1] % 4:
        raise TaoUserError(f"output_bbox must be [N, 4*num_classes, H, W], got shape {bbox.shape}")
    n, c4, gh, gw = bbox.shape
    img_h, img_w = image_size
    gx, gy = grid_anchors(gh, gw, img_h, img_w, offset)
    d = bbox.astype(np.float64).reshape(n, c4 // 4, 4, gh, gw) * scale
    gxx, gyy = gx[None, None, None, :], gy[None, None, :, None]
    x1 = np.clip(gxx - d[:, :, 0], 0, img_w)
    y1 = np.clip(gyy - d[:, :, 1], 0, img_h)
    x2 = np.minimum(np.maximum(gxx + d[:, :, 2], x1), img_w)
    y2 = np.minimum(np.maximum(gyy + d[:, :, 3], y1), img_h)
    out = np.stack([x1, y1, x2, y2], axis=2).astype(np.float32)
    return out[0] if single else out


def encode_bbox_targets(
    box: Sequence[float], gx: np.ndarray, gy: np.ndarray, scale: float = DEFAULT_SCALE
) -> np.ndarray:
    """The inverse of `decode_bbox_grid` for one box: [4, len(gy), len(gx)] of L, T, R, B.

    L = (gx - x1)/scale, T = (gy - y1)/scale, R = (x2 - gx)/scale, B = (y2 - gy)/scale, at every
    anchor (the rasterizer keeps them only where the box covers the cell).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    gxx = np.broadcast_to(np.asarray(gx, dtype=np.float64)[None, :], (len(gy), len(gx)))
    gyy = np.broadcast_to(np.asarray(gy, dtype=np.float64)[:, None], (len(gy), len(gx)))
    return np.stack([(gxx - x1) / scale, (gyy - y1) / scale, (x2 - gxx) / scale, (y2 - gyy) / scale])


# ------------------------------------------------------------------------------------ clustering
def pairwise_iou(boxes: np.ndarray, eps: float = _IOU_EPS) -> np.ndarray:
    """IoU matrix of xyxy boxes, regularised by `eps` in the union (TAO's clustering IoU)."""
    x1, y1, x2, y2 = np.asarray(boxes, dtype=np.float64).T
    iw = np.maximum(0.0, np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]))
    ih = np.maximum(0.0, np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]))
    inter = iw * ih
    area = (x2 - x1) * (y2 - y1)
    return inter / (area[:, None] + area[None, :] - inter + eps)


def nms_keep(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, score_threshold: float = 0.0) -> np.ndarray:
    """Indices kept by greedy NMS, in descending score order.

    IoU uses TAO's +1-pixel box sizes; a box is suppressed by a higher-scored kept box when
    IoU > iou_threshold; survivors need score > score_threshold.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        if scores[i] > score_threshold:
            keep.append(i)
        iw = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + 1)
        ih = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + 1)
        inter = iw * ih
        iou = inter / (area[i] + area[rest] - inter)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _dbscan(boxes, covs, class_name, params: ClusteringParams) -> list[Detection]:
    from sklearn.cluster import DBSCAN  # imported here: only clustering needs scikit-learn

    db = DBSCAN(eps=params.dbscan_eps, min_samples=max(int(params.dbscan_min_samples), 1), metric="precomputed")
    distance = np.clip(1.0 - pairwise_iou(boxes), 0.0, None)  # sklearn rejects tiny negatives
    labels = db.fit_predict(distance, sample_weight=covs)
    out = []
    for label in np.unique(labels[labels >= 0]):
        member = labels == label
        w, b = covs[member], boxes[member]
        total = float(w.sum())
        mean_box = (b * (w / total)[:, None]).sum(axis=0)
        confidence = total if params.confidence_model == "aggregate_cov" else total / len(w)
        if mean_box[3] - mean_box[1] <= params.minimum_bounding_box_height:
            continue
        if confidence < params.dbscan_confidence_threshold:
            continue
        out.append(Detection(class_name, mean_box.astype(np.float32), confidence, total / len(w), len(w), b, w))
    return out


def _nms(boxes, covs, class_name, params: ClusteringParams) -> list[Detection]:
    out = []
    for i in nms_keep(boxes, covs, params.nms_iou_threshold, params.nms_confidence_threshold):
        box = boxes[i].astype(np.float32)
        if box[3] - box[1] <= params.minimum_bounding_box_height:
            continue
        c = float(covs[i])
        out.append(Detection(class_name, box, c, c, 1, boxes[i : i + 1], covs[i : i + 1]))
    return out


def cluster_candidates(
    boxes: np.ndarray, covs: np.ndarray, class_name: str, params: ClusteringParams = ClusteringParams()
) -> list[Detection]:
    """Cluster one class's candidate boxes [K, 4] with coverages [K] (already thresholded)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    covs = np.asarray(covs, dtype=np.float64).reshape(-1)
    if len(boxes) != len(covs):
        raise TaoUserError(f"{len(boxes)} candidate boxes but {len(covs)} coverages")
    if not len(covs):
        return []
    if params.algorithm == "dbscan":
        dets = _dbscan(boxes, covs, class_name, params)
    elif params.algorithm == "nms":
        dets = _nms(boxes, covs, class_name, params)
    else:
        clusters = _dbscan(boxes, covs, class_name, params)
        if not clusters:
            return []
        cand_boxes = np.concatenate([d.candidate_boxes for d in clusters])
        cand_covs = np.concatenate([d.candidate_covs for d in clusters])
        dets = _nms(cand_boxes, cand_covs, class_name, params)
    return sorted(dets, key=lambda d: -d.confidence)


def _to_nchw(array: np.ndarray, layout: str, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise TaoUserError(f"{name} must be a 4-D [N, C, H, W] (or 3-D single frame) array, got shape {array.shape}")
    if layout.upper() == "NHWC":
        array = array.transpose(0, 3, 1, 2)
    elif layout.upper() != "NCHW":
        raise TaoUserError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    return array


def postprocess_detectnet(
    cov: np.ndarray,
    bbox: np.ndarray,
    class_names: Sequence[str],
    image_size: tuple[int, int],
    params: ClusteringParams | Mapping[str, ClusteringParams] | None = None,
    scale: float = DEFAULT_SCALE,
    offset: float = DEFAULT_OFFSET,
    layout: str = "NCHW",
) -> list[list[Detection]]:
    """Raw `output_cov` / `output_bbox` -> per frame, the clustered detections of every class.

    class_names: the model's classes in output-channel order (cost_function_config order).
    image_size: (height, width) of the network input; boxes come back in those pixels.
    params: one ClusteringParams for all classes, or class name -> ClusteringParams (a "default"
        key, as in inference specs, covers classes not listed).
    """
    cov = _to_nchw(cov, layout, "output_cov")
    bbox = _to_nchw(bbox, layout, "output_bbox")
    num_classes = len(class_names)
    if cov.shape[1] != num_classes or bbox.shape[1] != 4 * num_classes:
        raise TaoUserError(
            f"{num_classes} classes need output_cov with {num_classes} and output_bbox with {4 * num_classes} "
            f"channels; got output_cov {cov.shape} and output_bbox {bbox.shape}"
        )
    if cov.shape[0] != bbox.shape[0] or cov.shape[2:] != bbox.shape[2:]:
        raise TaoUserError(f"output_cov {cov.shape} and output_bbox {bbox.shape} disagree on batch or grid size")
    per_class = _params_per_class(params, class_names)
    absolute = decode_bbox_grid(bbox, image_size, scale, offset)  # [N, C, 4, H, W]
    frames = []
    for n in range(cov.shape[0]):
        dets: list[Detection] = []
        for c, name in enumerate(class_names):
            p = per_class[name]
            cell_cov = cov[n, c].reshape(-1)
            keep = cell_cov > p.coverage_threshold
            boxes = absolute[n, c].reshape(4, -1).T[keep]
            dets += cluster_candidates(boxes, cell_cov[keep], name, p)
        frames.append(sorted(dets, key=lambda d: -d.confidence))
    return frames


def _params_per_class(params, class_names) -> dict[str, ClusteringParams]:
    if params is None:
        params = ClusteringParams()
    if isinstance(params, ClusteringParams):
        return dict.fromkeys(class_names, params)
    out = {}
    for name in class_names:
        if name in params:
            out[name] = params[name]
        elif "default" in params:
            out[name] = params["default"]
        else:
            raise TaoUserError(f"no clustering config for class {name!r} (and no 'default' entry); "
                               f"configured: {sorted(params)}")  # fmt: skip
    return out


def scale_boxes(box: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Map xyxy boxes from a (h, w) network input back to a (h, w) original image."""
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    return np.asarray(box, dtype=np.float64) * np.array([sx, sy, sx, sy])
