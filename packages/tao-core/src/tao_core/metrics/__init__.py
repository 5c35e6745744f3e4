"""Detection metrics shared by the networks (numpy / faster-coco-eval only; no torch, no tensorflow).

- `tao_core.metrics.coco.evaluate`: COCO mAP (bbox or segm), identical to pycocotools.
- `tao_core.metrics.detectnet.evaluate_detections`: DetectNet_v2 / KITTI-style per-class AP
  (SAMPLE = VOC2007 11-point, INTEGRATE = VOC2010+ area under the precision envelope).
- `tao_core.metrics.segmentation.SemanticEvaluator`: mIoU, fwIoU, pixel / mean accuracy (detectron2's).
- `tao_core.metrics.panoptic.PanopticEvaluator` / `pq_compute_files`: PQ, SQ, RQ (panopticapi's pq_compute).

Submodules are imported lazily by the caller so that importing `tao_core.metrics` stays cheap.
"""
