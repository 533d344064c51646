"""Page images for ``visualize``: the input page and its blocks drawn in reading order, as base64 JPEG.

Like PaddleX serving, images are scaled down to fit ``MAX_OUTPUT_SIDE`` (2000 px) before encoding.
"""

from __future__ import annotations

import base64
import io
import zlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from app.compat.convert import ORDERED_LABELS
from app.documents import Limits, open_document
from app.schemas import PageResult

MAX_OUTPUT_SIDE = 2000
_PALETTE = [
    (255, 99, 71),
    (65, 105, 225),
    (60, 179, 113),
    (238, 130, 238),
    (255, 165, 0),
    (0, 191, 255),
    (154, 205, 50),
    (220, 20, 60),
]


def label_colour(label: str) -> tuple[int, int, int]:
    """A stable colour for a block label."""
    return _PALETTE[zlib.crc32(label.encode("utf-8")) % len(_PALETTE)]


def draw_layout_order(image: Image.Image, page: PageResult) -> Image.Image:
    """A copy of ``image`` with each block shaded by label and numbered in reading order (PaddleX's
    ``layout_order_res``). Block boxes are in ``page`` pixels and are scaled to ``image``."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas, "RGBA")
    scale_x = canvas.width / page.width if page.width else 1.0
    scale_y = canvas.height / page.height if page.height else 1.0
    font_size = int(0.018 * canvas.width) + 2
    font = ImageFont.load_default(size=font_size)
    number = 0
    for block in sorted(page.blocks, key=lambda b: b.order):
        x0, y0, x1, y1 = block.bbox
        box = (x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y)
        colour = label_colour(block.label)
        draw.rectangle(box, fill=(*colour, 70), outline=(*colour, 255), width=2)
        if block.label in ORDERED_LABELS:
            number += 1
            x = box[2] + 2 if canvas.width - box[2] >= font_size * 2 else box[2] - font_size * 1.6
            draw.text((x, box[1] - font_size // 2), str(number), font=font, fill=(255, 0, 0, 255))
    return canvas


def jpeg_base64(image: Image.Image, max_side: int = MAX_OUTPUT_SIDE, quality: int = 85) -> str:
    """``image`` as a base64 JPEG, scaled down (aspect kept) so that neither side exceeds ``max_side``."""
    picture = image.convert("RGB")
    if max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_visuals(
    path: Path, content_type: str, limits: Limits, dpi: int, pages: list[PageResult]
) -> list[tuple[str, dict[str, str]] | None]:
    """For each page of the document at ``path``: (input image, ``{"layout_order_res": ...}``), base64 JPEG.

    Pages are rendered again, one at a time, at the ``dpi`` used for recognition. A page that failed
    gets None. Blocking: run it in a worker thread.
    """
    visuals: list[tuple[str, dict[str, str]] | None] = []
    with open_document(path, content_type, limits) as document:
        for page in pages:
            if page.error:
                visuals.append(None)
                continue
            image = document.render(page.index, dpi)
            visuals.append((jpeg_base64(image), {"layout_order_res": jpeg_base64(draw_layout_order(image, page))}))
            image.close()
    return visuals
