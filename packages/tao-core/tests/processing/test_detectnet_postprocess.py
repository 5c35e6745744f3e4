"""DetectNet_v2 grid decode and clustering (tao_core.processing.detectnet) on hand-made fixtures."""

import numpy as np
import pytest

from tao_core.errors import TaoUserError
from tao_core.processing.detectnet import (
    ClusteringParams,
    cluster_candidates,
    decode_bbox_grid,
    encode_bbox_targets,
    grid_anchors,
    nms_keep,
    pairwise_iou,
    postprocess_detectnet,
)
from tao_core.proto.detectnet_v2.clustering_pb2 import ClusteringConfig


def test_grid_anchors_are_stride_times_index_plus_offset():
    gx, gy = grid_anchors(2, 3, 32, 48, 0.5)
    np.testing.assert_allclose(gx, [0.5, 16.5, 32.5])
    np.testing.assert_allclose(gy, [0.5, 16.5])


def test_decode_one_cell_by_hand_and_clipping():
    bbox = np.zeros((1, 4, 2, 2), np.float32)  # 1 class, 2x2 grid on a 32x32 image (stride 16)
    bbox[0, :, 1, 0] = [0.1, 0.2, 0.3, 0.4]  # cell x=0, y=1: anchor (0.5, 16.5)
    bbox[0, :, 0, 1] = [2.0, 2.0, 2.0, 2.0]  # cell x=1, y=0: far outside -> clipped to the image
    out = decode_bbox_grid(bbox, (32, 32))
    assert out.shape == (1, 1, 4, 2, 2)
    np.testing.assert_allclose(out[0, 0, :, 1, 0], [0.0, 16.5 - 7.0, 0.5 + 10.5, 16.5 + 14.0], rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, :, 0, 1], [0.0, 0.0, 32.0, 32.0])
    # x2 never below x1: negative R clips to x1
    bbox[0, :, 0, 0] = [-1.0, -1.0, -1.0, -1.0]
    cell = decode_bbox_grid(bbox, (32, 32))[0, 0, :, 0, 0]
    assert cell[2] == cell[0] and cell[3] == cell[1]


def test_encode_decode_round_trip_scale_35_offset_05():
    gx, gy = grid_anchors(4, 6, 64, 96)
    box = (20.25, 10.5, 70.0, 50.75)
    targets = encode_bbox_targets(box, gx, gy, 35.0).astype(np.float32)  # [4, H, W]
    decoded = decode_bbox_grid(targets[None], (64, 96), 35.0, 0.5)[0, 0]
    inside = (gx[None, :] > box[0]) & (gx[None, :] < box[2]) & (gy[:, None] > box[1]) & (gy[:, None] < box[3])
    assert inside.any()
    for k, v in enumerate(box):
        np.testing.assert_allclose(decoded[k][inside], v, rtol=1e-5)
    np.testing.assert_allclose(targets[0, 1, 2], (gx[2] - 20.25) / 35.0, rtol=1e-6)


def _two_objects():
    a = np.array([[10, 10, 50, 60], [12, 11, 52, 62], [11, 9, 49, 59]], float)
    b = np.array([[100, 100, 140, 150], [101, 99, 141, 151]], float)
    return np.concatenate([a, b]), np.array([0.9, 0.5, 0.6, 0.8, 0.4])


def test_dbscan_weighted_mean_and_aggregate_confidence():
    boxes, covs = _two_objects()
    dets = cluster_candidates(boxes, covs, "car", ClusteringParams(dbscan_eps=0.3, minimum_bounding_box_height=4))
    assert [d.num_candidates for d in dets] == [3, 2]
    np.testing.assert_allclose(dets[0].confidence, 2.0)
    np.testing.assert_allclose(dets[0].bbox, (boxes[:3] * covs[:3, None]).sum(0) / 2.0, rtol=1e-6)
    np.testing.assert_allclose(dets[1].confidence, 1.2)
    np.testing.assert_allclose(dets[0].coverage, 2.0 / 3)


def test_dbscan_mean_cov_min_height_and_confidence_threshold():
    boxes, covs = _two_objects()
    mean = cluster_candidates(boxes, covs, "car", ClusteringParams(dbscan_eps=0.3, confidence_model="mean_cov",
                                                                  minimum_bounding_box_height=4))
    np.testing.assert_allclose([d.confidence for d in mean], [2.0 / 3, 0.6])
    # both clusters are ~50 px tall: a 50 px minimum removes them (height <= minimum is dropped)
    assert cluster_candidates(boxes, covs, "car", ClusteringParams(dbscan_eps=0.3,
                                                                   minimum_bounding_box_height=51)) == []
    high = ClusteringParams(dbscan_eps=0.3, minimum_bounding_box_height=4, dbscan_confidence_threshold=1.5)
    assert [d.num_candidates for d in cluster_candidates(boxes, covs, "car", high)] == [3]


def test_dbscan_min_samples_is_a_coverage_weight():
    boxes, covs = _two_objects()
    # min_samples 2 is compared with the summed coverage of a neighbourhood (sample_weight)
    dets = cluster_candidates(boxes, covs, "car", ClusteringParams(dbscan_eps=0.3, dbscan_min_samples=2,
                                                                  minimum_bounding_box_height=4))
    assert [d.num_candidates for d in dets] == [3]


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]], float)
    scores = np.array([0.6, 0.9, 0.3, 0.05])
    # IoU(+1 px) of box 1 with box 0: inter 10*10, areas 121 -> 100/142 = 0.704
    # box 3 overlaps box 1 by 50/137 = 0.36 and box 0 by 66/121 = 0.55
    assert list(nms_keep(boxes, scores, 0.5)) == [1, 2, 3]
    assert list(nms_keep(boxes, scores, 0.8)) == [1, 0, 2, 3]
    assert list(nms_keep(boxes, scores, 0.8, score_threshold=0.1)) == [1, 0, 2]


def test_nms_and_hybrid_clustering():
    boxes, covs = _two_objects()
    nms = cluster_candidates(boxes, covs, "car", ClusteringParams(algorithm="NMS", nms_iou_threshold=0.5,
                                                                 minimum_bounding_box_height=4))
    assert [round(d.confidence, 3) for d in nms] == [0.9, 0.8]
    np.testing.assert_allclose(nms[0].bbox, boxes[0])
    hybrid = ClusteringParams(algorithm="HYBRID", dbscan_eps=0.3, dbscan_confidence_threshold=1.5,
                              nms_iou_threshold=0.5, minimum_bounding_box_height=4)
    dets = cluster_candidates(boxes, covs, "car", hybrid)
    # DBSCAN keeps only the first cluster (2.0 >= 1.5); NMS then keeps its best raw box
    assert len(dets) == 1 and dets[0].confidence == pytest.approx(0.9)


def test_pairwise_iou_matches_definition():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], float)
    np.testing.assert_allclose(pairwise_iou(boxes)[0, 1], 50 / 150, rtol=1e-6)


def test_params_from_proto_and_defaults():
    c = ClusteringConfig(coverage_threshold=0.01, minimum_bounding_box_height=4, clustering_algorithm=2,
                         dbscan_eps=0.2, dbscan_min_samples=0.05)
    p = ClusteringParams.from_proto(c, "mean_cov")
    assert p.algorithm == "hybrid" and p.confidence_model == "mean_cov"
    assert p.dbscan_confidence_threshold == pytest.approx(0.1) and p.nms_iou_threshold == pytest.approx(0.2)
    assert p.minimum_bounding_box_height == 4.0


def _synthetic_outputs(box, shape=(64, 96), classes=2, cls=1):
    gh, gw = shape[0] // 16, shape[1] // 16
    gx, gy = grid_anchors(gh, gw, *shape)
    cov = np.zeros((1, classes, gh, gw), np.float32)
    bbox = np.zeros((1, 4 * classes, gh, gw), np.float32)
    inside = (gx[None, :] > box[0]) & (gx[None, :] < box[2]) & (gy[:, None] > box[1]) & (gy[:, None] < box[3])
    cov[0, cls][inside] = 0.7
    bbox[0, 4 * cls : 4 * cls + 4] = encode_bbox_targets(box, gx, gy)
    return cov, bbox


def test_postprocess_end_to_end_and_layouts():
    box = (20.0, 10.0, 70.0, 50.0)
    cov, bbox = _synthetic_outputs(box)
    params = {"default": ClusteringParams(minimum_bounding_box_height=4)}
    frames = postprocess_detectnet(cov, bbox, ["car", "person"], (64, 96), params)
    assert len(frames) == 1 and len(frames[0]) == 1
    det = frames[0][0]
    assert det.class_name == "person"
    np.testing.assert_allclose(det.bbox, box, rtol=1e-5)
    nhwc = postprocess_detectnet(cov.transpose(0, 2, 3, 1), bbox.transpose(0, 2, 3, 1), ["car", "person"],
                                 (64, 96), params, layout="NHWC")
    np.testing.assert_allclose(nhwc[0][0].bbox, det.bbox)
    single = postprocess_detectnet(cov[0], bbox[0], ["car", "person"], (64, 96), params)
    assert single[0][0].confidence == pytest.approx(det.confidence)


def test_postprocess_rejects_bad_shapes_and_missing_class_config():
    cov, bbox = _synthetic_outputs((20.0, 10.0, 70.0, 50.0))
    with pytest.raises(TaoUserError, match="3 classes need output_cov"):
        postprocess_detectnet(cov, bbox, ["a", "b", "c"], (64, 96))
    with pytest.raises(TaoUserError, match="no clustering config for class 'person'"):
        postprocess_detectnet(cov, bbox, ["car", "person"], (64, 96), {"car": ClusteringParams()})
    with pytest.raises(TaoUserError, match="clustering_algorithm"):
        ClusteringParams(algorithm="kmeans")
