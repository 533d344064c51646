"""Pure conversion of one PaddleOCR-VL page result into an :class:`~app.engines.base.EnginePage`.

Input is what the pipeline returns for a page, as plain data:

* ``res``: ``result.json["res"]``, with ``parsing_res_list`` blocks of
  ``{block_label, block_content, block_bbox, block_id, block_order, group_id}``;
* ``markdown``: ``result.markdown``, i.e. ``{"markdown_texts": str, "markdown_images": {relpath: PIL image}}``.

Reading order: the pipeline emits ``parsing_res_list`` in reading order (PP-DocLayoutV2 predicts it) and
writes the page Markdown in exactly that list order. ``block_order`` is only a 1-based numbering of the
labels the pipeline draws in its order visualisation; tables, images, figure titles, page numbers, ...
have ``None`` there. So a block's ``order`` is its position in the list; should the numbered blocks
ever disagree with the list, they are sorted by ``block_order`` and each unnumbered block stays right
after the numbered block it followed (a figure title keeps following its figure).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from PIL import Image

from app.engines.base import EnginePage
from app.layout.html_tables import parse_html_table
from app.results import rewrite_image_refs
from app.schemas import Block

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


def page_from_vl_result(res: Mapping[str, Any], markdown: Mapping[str, Any] | None) -> EnginePage:
    """Blocks, page Markdown and the Markdown's images of one page.

    Tables keep the HTML the pipeline produced, in the block text and in the Markdown. Image names
    stay the pipeline's relative paths (``imgs/img_in_image_box_...jpg``) unless a name is unsafe for
    a file path, in which case it is renamed and the Markdown rewritten to match.
    """
    blocks = blocks_from_parsing_res(res.get("parsing_res_list") or [])
    text = str((markdown or {}).get("markdown_texts") or "")
    images: dict[str, bytes] = {}
    renames: dict[str, str] = {}
    for number, (name, image) in enumerate(((markdown or {}).get("markdown_images") or {}).items(), start=1):
        safe = safe_image_name(str(name), number)
        images[safe] = encode_image(image, safe)
        if safe != name:
            renames[str(name)] = safe
    return EnginePage(blocks=blocks, markdown=rewrite_image_refs(text, renames), images=images)


def blocks_from_parsing_res(items: Sequence[Mapping[str, Any]]) -> list[Block]:
    """``parsing_res_list`` -> blocks with label, integer-pixel bbox, text and ``order`` (from 0); a ``table``
    block also carries its HTML as rows and cells (``table``)."""
    positions = reading_positions([item.get("block_order") for item in items])
    blocks = []
    for item, order in zip(items, positions, strict=True):
        bbox = [float(v) for v in (item.get("block_bbox") or [0, 0, 0, 0])][:4]
        text, label = str(item.get("block_content") or ""), str(item.get("block_label") or "text")
        table = parse_html_table(text) if label == "table" else None
        blocks.append(Block(bbox=bbox, text=text, score=None, label=label, order=order, table=table))
    return sorted(blocks, key=lambda b: b.order)


def reading_positions(block_orders: Sequence[int | None]) -> list[int]:
    """Reading position (0..n-1) of each block, given the pipeline's ``block_order`` values in list order.

    Numbered blocks go by their number; an unnumbered block is anchored right after the numbered block
    that precedes it in the list (before all of them when none does), list order breaking ties.
    """
    keys = []
    anchor = 0
    for index, value in enumerate(block_orders):
        if isinstance(value, int) and not isinstance(value, bool):
            anchor = value
            keys.append((value, 0, index))
        else:
            keys.append((anchor, 1, index))
    ranked = sorted(range(len(keys)), key=lambda i: keys[i])
    positions = [0] * len(keys)
    for position, index in enumerate(ranked):
        positions[index] = position
    return positions


def safe_image_name(name: str, number: int) -> str:
    """``name`` when it is a plain relative path of safe parts with an image suffix, else ``imgs/image_<n>.jpg``."""
    path = PurePosixPath(name)
    parts = path.parts
    if (
        parts
        and not path.is_absolute()
        and all(_SAFE_NAME.match(part) for part in parts)
        and path.suffix.lower() in _IMAGE_FORMATS
    ):
        return name
    return f"imgs/image_{number}.jpg"


def encode_image(image: Any, name: str) -> bytes:
    """A PIL image (or already encoded bytes) as file bytes in the format ``name``'s suffix names."""
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"markdown image {name!r} is a {type(image).__name__}, not a PIL image")
    fmt = _IMAGE_FORMATS.get(PurePosixPath(name).suffix.lower(), "JPEG")
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()
