"""Draw detection boxes with class names and scores on an image.

Colours follow TAO's inference `color_map` spec: {class name: colour}, where a colour is a
colour name ("red"), a hex string ("#ff0000"), a CSS "rgb(...)" string or an [R, G, B] list.
Classes missing from the map get a colour derived from a hash of their name, so a class keeps
the same colour across images, runs and processes whatever else is in the picture.
"""

from __future__ import annotations

import colorsys
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from tao_core.errors import TaoUserError

RGB = tuple[int, int, int]
ColorSpec = str | Sequence[int]


def parse_color(value: ColorSpec, where: str = "color_map") -> RGB:
    """An RGB tuple from a colour name, hex/rgb() string or [R, G, B]; else TaoUserError."""
    if isinstance(value, str):
        try:
            rgb = ImageColor.getrgb(value.strip())
        except ValueError:
            raise TaoUserError(
                f"{where}: unknown colour {value!r}; expected a colour name such as 'red', "
                "a hex string '#rrggbb' or an [R, G, B] list"
            ) from None
        return rgb[:3]
    is_rgb = isinstance(value, Sequence) and len(value) == 3
    if is_rgb and all(isinstance(v, int | np.integer) and 0 <= v <= 255 for v in value):
        return int(value[0]), int(value[1]), int(value[2])
    raise TaoUserError(f"{where}: colour {value!r}; expected [R, G, B] with integers 0..255")


def parse_color_map(color_map: Mapping[str, ColorSpec] | None) -> dict[str, RGB]:
    """Validate a whole color_map up front, so a typo fails before any image is processed."""
    if not color_map:
        return {}
    return {str(k): parse_color(v, f"color_map.{k}") for k, v in color_map.items()}


def default_color(name: str) -> RGB:
    """A saturated colour picked from the class name alone (stable across runs)."""
    h = zlib.crc32(name.encode("utf-8"))
    hue = (h % 360) / 360.0
    value = 0.75 + ((h >> 9) % 25) / 100.0  # 0.75..0.99: bright enough to see on dark scenes
    r, g, b = colorsys.hsv_to_rgb(hue, 0.9, value)
    return round(r * 255), round(g * 255), round(b * 255)


def class_color(name: str, colors: Mapping[str, RGB]) -> RGB:
    """The colour for a class: exact key, else case-insensitive key, else default_color."""
    if name in colors:
        return colors[name]
    lowered = {k.lower(): v for k, v in colors.items()}
    return lowered.get(name.lower(), default_color(name))


def to_pil_rgb(image: np.ndarray | Image.Image) -> Image.Image:
    """A new RGB PIL image from a PIL image or an HxW / HxWx{1,3,4} uint8 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")  # convert() always copies, so the caller's image is untouched
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TaoUserError(f"image array has dtype {arr.dtype}; expected uint8 (0..255)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]), "RGB")
    raise TaoUserError(f"image array has shape {arr.shape}; expected HxW or HxWx3")


def draw_detections(
    image: np.ndarray | Image.Image,
    boxes_xyxy: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    scores: Sequence[float] | np.ndarray | None = None,
    color_map: Mapping[str, ColorSpec] | None = None,
    outline_width: int = 3,
    show_scores: bool = True,
) -> Image.Image:
    """A copy of `image` with one box per detection and a "name: score" tag above it.

    boxes_xyxy are pixel corners (x1, y1, x2, y2), class_names one name per box, scores
    optional (one per box). outline_width 3 is TAO's default.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(class_names) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(
            f"got {len(boxes)} boxes, {len(class_names)} class names and "
            f"{'no' if scores is None else len(scores)} scores; expected one of each per box"
        )
    if outline_width < 1:
        raise TaoUserError(f"outline_width: got {outline_width!r}; expected an integer >= 1")
    colors = parse_color_map(color_map)
    canvas = to_pil_rgb(image)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (box, name) in enumerate(zip(boxes, class_names, strict=True)):
        color = class_color(name, colors)
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=color, width=int(outline_width))
        text = name
        if show_scores and scores is not None:
            text = f"{name}: {float(scores[i]):.2f}"
        _draw_tag(draw, font, text, x1, y1, color)
    return canvas


def _draw_tag(draw: ImageDraw.ImageDraw, font, text: str, x: float, y: float, color: RGB) -> None:
    # Filled tag in the class colour above the box, or inside it when the box touches the top.
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 4
    ty = y - h if y - h >= 0 else y
    draw.rectangle([x, ty, x + w, ty + h], fill=color)
    # Black or white text, whichever reads better on the tag colour (ITU-R BT.601 luma).
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    draw.text((x + 2 - left, ty + 2 - top), text, fill=(0, 0, 0) if luma > 128 else (255, 255, 255), font=font)
