"""Draw segmentation results on an image: class colours, segment outlines, tags and a legend.

    canvas = draw_segments(image, segment_map, segments)

`segment_map` (H, W) int holds a segment id per pixel (0: none); `segments` lists
Segment(id, name, color, score) for the ids to draw. Each segment is blended in its colour
(alpha 0.45, so the picture stays visible), outlined by the pixels where the segment id changes,
thing / instance segments get a "name" or "name: score" tag at their top-left (placed by
tao_core.visualize.draw.place_tags, so tags stay inside the image and off each other), and a
legend box in the top-left corner lists every class shown with its colour, largest area first.
Instance masks may overlap: `draw_instances` paints them lowest score first, so the best one
is on top, each with its own outline.

Colours come from the class (tao_core.visualize.draw.class_color: a label map's `color`, else a
colour derived from the name), so a class has the same colour in every image and every mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from tao_core.visualize.draw import RGB, _draw_tag, _text_size, place_tags, tag_font, to_pil_rgb

ALPHA = 0.45  # weight of the class colour over the picture
LEGEND_MAX = 20  # classes listed in the legend; the rest are summed up in one line


@dataclass(frozen=True)
class Segment:
    id: int
    name: str
    color: RGB
    score: float | None = None
    tagged: bool = True  # things / instances get a tag; stuff regions only the legend


def boundaries(segment_map: np.ndarray, width: int = 1) -> np.ndarray:
    """(H, W) bool: pixels where the segment id differs from a 4-neighbour's, thickened to `width`."""
    m = np.asarray(segment_map)
    edge = np.zeros(m.shape, bool)
    diff_x = m[:, 1:] != m[:, :-1]
    diff_y = m[1:, :] != m[:-1, :]
    edge[:, 1:] |= diff_x
    edge[:, :-1] |= diff_x
    edge[1:, :] |= diff_y
    edge[:-1, :] |= diff_y
    for _ in range(max(0, int(width) - 1)):
        grown = edge.copy()
        grown[1:, :] |= edge[:-1, :]
        grown[:-1, :] |= edge[1:, :]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge


def outline_width(size_hw: Sequence[int]) -> int:
    """1 px on small pictures, about 1/300 of the shorter side on large ones."""
    return max(1, round(min(int(size_hw[0]), int(size_hw[1])) / 300))


def _darker(color: RGB) -> RGB:
    return tuple(int(c * 0.55) for c in color)  # type: ignore[return-value]


def _blend(pixels: np.ndarray, mask: np.ndarray, color: RGB) -> None:
    pixels[mask] = (pixels[mask] * (1 - ALPHA) + np.asarray(color, np.float32) * ALPHA)


def _bbox(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def draw_segments(image, segment_map: np.ndarray, segments: Sequence[Segment]) -> Image.Image:
    """A copy of `image` with every listed segment of `segment_map` coloured, outlined and tagged."""
    canvas = to_pil_rgb(image)
    seg = np.asarray(segment_map)
    if seg.shape != (canvas.height, canvas.width):
        raise ValueError(f"segment map {seg.shape} does not match the image {canvas.height}x{canvas.width}")
    pixels = np.asarray(canvas, np.float32).copy()
    known = {s.id for s in segments}
    shown = np.where(np.isin(seg, list(known)), seg, 0) if known else np.zeros_like(seg)
    for s in segments:
        _blend(pixels, shown == s.id, s.color)
    edge = boundaries(shown, outline_width(seg.shape))
    by_id = {s.id: s for s in segments}
    for s in segments:
        pixels[edge & (shown == s.id)] = _darker(s.color)
    canvas = Image.fromarray(np.rint(pixels).clip(0, 255).astype(np.uint8), "RGB")
    tags = [(s, _bbox(shown == s.id)) for s in segments if s.tagged]
    _draw_tags(canvas, [(s, b) for s, b in tags if b is not None])
    areas: dict[tuple[str, RGB], int] = {}
    ids, counts = np.unique(shown, return_counts=True)
    for sid, n in zip(ids.tolist(), counts.tolist(), strict=True):
        if sid in by_id:
            key = (by_id[sid].name, by_id[sid].color)
            areas[key] = areas.get(key, 0) + int(n)
    draw_legend(canvas, areas)
    return canvas


def draw_instances(image, masks: np.ndarray, segments: Sequence[Segment]) -> Image.Image:
    """A copy of `image` with the (K, H, W) bool instance masks painted, lowest score first."""
    canvas = to_pil_rgb(image)
    masks = np.asarray(masks, bool).reshape(-1, canvas.height, canvas.width)
    if len(masks) != len(segments):
        raise ValueError(f"got {len(masks)} masks and {len(segments)} segments; expected one per mask")
    pixels = np.asarray(canvas, np.float32).copy()
    order = sorted(range(len(segments)), key=lambda i: segments[i].score or 0.0)
    width = outline_width(masks.shape[1:])
    areas: dict[tuple[str, RGB], int] = {}
    for i in order:
        s, m = segments[i], masks[i]
        _blend(pixels, m, s.color)
        pixels[boundaries(m, width) & m] = _darker(s.color)
        key = (s.name, s.color)
        areas[key] = areas.get(key, 0) + int(m.sum())
    canvas = Image.fromarray(np.rint(pixels).clip(0, 255).astype(np.uint8), "RGB")
    _draw_tags(canvas, [(segments[i], _bbox(masks[i])) for i in order[::-1] if masks[i].any()])
    draw_legend(canvas, {k: v for k, v in areas.items() if v > 0})
    return canvas


def _draw_tags(canvas: Image.Image, items: list[tuple[Segment, list[float]]]) -> None:
    if not items:
        return
    draw = ImageDraw.Draw(canvas)
    font = tag_font(canvas.size)
    texts = [s.name if s.score is None else f"{s.name}: {s.score:.2f}" for s, _ in items]
    sizes = [_text_size(draw, font, t) for t in texts]
    boxes = np.array([b for _, b in items], np.float64)
    for (s, _), text, size, (x, y) in zip(items, texts, sizes, place_tags(boxes, sizes, canvas.size), strict=True):
        _draw_tag(draw, font, text, x, y, size, s.color)


def draw_legend(canvas: Image.Image, areas: dict[tuple[str, RGB], int]) -> None:
    """A box in the top-left corner: one colour swatch and class name per line, largest area first."""
    if not areas:
        return
    draw = ImageDraw.Draw(canvas)
    font = tag_font(canvas.size)
    total = sum(areas.values()) or 1
    ranked = sorted(areas.items(), key=lambda kv: -kv[1])
    lines = [(name, color, f"{name} {100 * n / total:.0f}%") for (name, color), n in ranked[:LEGEND_MAX]]
    if len(ranked) > LEGEND_MAX:
        lines.append(("", (128, 128, 128), f"+{len(ranked) - LEGEND_MAX} more classes"))
    sizes = [_text_size(draw, font, text) for _, _, text in lines]
    line_h = max(h for _, h in sizes)
    swatch = line_h
    width = swatch + 4 + max(w for w, _ in sizes) + 4
    height = line_h * len(lines) + 4
    draw.rectangle([0, 0, width, height], fill=(255, 255, 255), outline=(0, 0, 0))
    for i, ((_, color, text), _) in enumerate(zip(lines, sizes, strict=True)):
        y = 2 + i * line_h
        draw.rectangle([2, y + 1, 2 + swatch - 2, y + line_h - 2], fill=color, outline=(0, 0, 0))
        left, top, _, _ = draw.textbbox((0, 0), text, font=font)
        draw.text((swatch + 4 - left, y + 2 - top), text, fill=(0, 0, 0), font=font)
