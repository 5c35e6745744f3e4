"""Training targets of DetectNet_v2 (TAO's bbox rasterizer, shared/research/anchors-tao.md §4.3), in numpy.

For each class c the rasterizer writes, on the H/16 x W/16 output grid:

- `cov` [C, H, W]: coverage of an ellipse per box, the 4x4-supersampled fraction of each grid
  cell inside it. In grid units, with the box's corners (x1, y1, x2, y2) / stride: centre
  c = x1 + cov_center_x * (x2 - x1) (same for y); half-size s = distance from c to the nearer
  edge; radii r = cov_radius * s, at least 0.1, then scaled up (aspect kept) until the smaller
  one is >= bbox_min_radius. Boxes of one class are composited keeping the larger coverage.
  Around each ellipse, the deadzone (radii (1 - dz) r + dz s) clears what earlier, farther
  boxes (smaller y2, drawn first) left there, so overlapping objects stay separable.
- `bbox` [4C, H, W]: L, T, R, B (tao_core.processing.detectnet.encode_bbox_targets, scale 35,
  offset 0.5 in input pixels) of the box that owns the cell; 0 elsewhere.
- `cov_norm` [C, H, W]: coverage * 1 / max(4 rx ry, 1), the weight of the bbox L1 cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tao_core.processing.detectnet import encode_bbox_targets, grid_anchors

_SUPERSAMPLE = (np.arange(4) + 0.5) / 4.0


@dataclass(frozen=True)
class ClassRaster:
    """bbox_rasterizer_config.target_class_config of one class (documented defaults)."""

    cov_center_x: float = 0.5
    cov_center_y: float = 0.5
    cov_radius_x: float = 0.4
    cov_radius_y: float = 0.4
    bbox_min_radius: float = 1.0

    @classmethod
    def from_proto(cls, cfg) -> ClassRaster:
        # proto3 reads an unset field as 0; a zero centre or radius is never meant, so it takes the default
        return cls(cfg.cov_center_x or 0.5, cfg.cov_center_y or 0.5, cfg.cov_radius_x or 0.4,
                   cfg.cov_radius_y or 0.4, cfg.bbox_min_radius)  # fmt: skip


def ellipse_radii(box_grid, cfg: ClassRaster, deadzone: float):
    """(centre, coverage radii, deadzone radii), each (x, y), of a box in grid units."""
    x1, y1, x2, y2 = box_grid
    cx, cy = x1 + cfg.cov_center_x * (x2 - x1), y1 + cfg.cov_center_y * (y2 - y1)
    sx, sy = min(cx - x1, x2 - cx), min(cy - y1, y2 - cy)
    rx, ry = max(cfg.cov_radius_x * sx, 0.1), max(cfg.cov_radius_y * sy, 0.1)
    smaller = min(rx, ry)
    if smaller < cfg.bbox_min_radius:
        rx, ry = rx * cfg.bbox_min_radius / smaller, ry * cfg.bbox_min_radius / smaller
    dx, dy = max((1 - deadzone) * rx + deadzone * sx, rx), max((1 - deadzone) * ry + deadzone * sy, ry)
    return (cx, cy), (rx, ry), (dx, dy)


def _fraction_inside(centre, radii, grid_h, grid_w) -> np.ndarray:
    """[grid_h, grid_w] fraction of each cell's 4x4 sample points inside the ellipse."""
    px = (np.arange(grid_w)[:, None] + _SUPERSAMPLE[None, :]).reshape(-1)  # [W*4]
    py = (np.arange(grid_h)[:, None] + _SUPERSAMPLE[None, :]).reshape(-1)  # [H*4]
    inside = ((px[None, :] - centre[0]) / radii[0]) ** 2 + ((py[:, None] - centre[1]) / radii[1]) ** 2 <= 1.0
    return inside.reshape(grid_h, 4, grid_w, 4).mean(axis=(1, 3))


def rasterize(boxes, class_ids, num_classes: int, image_hw, configs: list[ClassRaster], deadzone: float = 0.67,
              scale: float = 35.0, offset: float = 0.5):  # fmt: skip
    """(cov [C,H,W], bbox [4C,H,W], cov_norm [C,H,W]) float32 targets for one image.

    boxes: [K, 4] x1 y1 x2 y2 in input pixels (after augmentation); class_ids: [K] (-1 = ignore).
    """
    img_h, img_w = image_hw
    gh, gw = img_h // 16, img_w // 16
    stride_x, stride_y = img_w / gw, img_h / gh
    gx, gy = grid_anchors(gh, gw, img_h, img_w, offset)
    cov = np.zeros((num_classes, gh, gw), np.float32)
    bbox = np.zeros((4 * num_classes, gh, gw), np.float32)
    norm = np.zeros((num_classes, gh, gw), np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    class_ids = np.asarray(class_ids).reshape(-1)
    for k in np.argsort(boxes[:, 3], kind="stable"):  # farther (higher up) objects first
        c = int(class_ids[k])
        x1, y1, x2, y2 = boxes[k]
        if c < 0 or x2 <= x1 or y2 <= y1:
            continue
        grid_box = (x1 / stride_x, y1 / stride_y, x2 / stride_x, y2 / stride_y)
        centre, radii, dead = ellipse_radii(grid_box, configs[c], deadzone)
        coverage = _fraction_inside(centre, radii, gh, gw)
        in_deadzone = _fraction_inside(centre, dead, gh, gw) > 0
        cov[c][in_deadzone & (coverage == 0)] = 0.0  # the deadzone clears what lies behind
        norm[c][in_deadzone & (coverage == 0)] = 0.0
        owns = coverage >= cov[c]
        owns &= coverage > 0
        inv_area = 1.0 / max(4.0 * radii[0] * radii[1], 1.0)
        cov[c][owns] = coverage[owns]
        norm[c][owns] = coverage[owns] * inv_area
        targets = encode_bbox_targets((x1, y1, x2, y2), gx, gy, scale)
        bbox[4 * c : 4 * c + 4][:, owns] = targets[:, owns]
    return cov, bbox, norm
