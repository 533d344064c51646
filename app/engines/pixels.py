"""A page image as the BGR ``uint8`` array that OpenCV-style models read (rapidocr, paddlex), in one pass with the
interpreter lock released.

The usual ways, ``np.asarray(image)`` and ``image.tobytes()``, have Pillow pack its pixels into a new bytes object
in 64 KB chunks, holding the interpreter lock throughout, and then copy them once more (join, channel swap). For a
service that streams pages to a VLM server from many threads, that was the largest single item of what holds the
lock per page (``scripts/profile_vl.py --gil``).

Pillow (11.2 and later) exports an image's own memory through the Arrow C data interface
(``Image.__arrow_c_array__``, a stable ABI): an RGB image as fixed-size lists of 4 ``uint8`` (R, G, B, pad) in one
buffer, when its rows lie in one memory block. :func:`bgr_array` reads that buffer in place, as a read-only numpy
view kept alive by the exported array, and has OpenCV write the BGR copy (which releases the lock). Where Pillow
cannot export (an older Pillow, an image spread over several blocks: larger than ``Image.core.get_block_size()``),
the packing path is used: the same pixels either way.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from PIL import Image


class _ArrowArray(ctypes.Structure):
    """``struct ArrowArray`` of the Arrow C data interface."""


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]


class _ArrowSchema(ctypes.Structure):
    """``struct ArrowSchema`` of the Arrow C data interface."""


_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def bgr_array(image: Image.Image) -> np.ndarray:
    """``image`` (any mode; converted to RGB first) as a new, writable, contiguous ``(height, width, 3)`` BGR
    ``uint8`` array."""
    import cv2  # a dependency of rapidocr and paddlex: present wherever an engine needs this

    page = image if image.mode == "RGB" else image.convert("RGB")
    exported = _export(page)
    if exported is not None:
        rgbx, _keep_alive = exported
        return cv2.cvtColor(rgbx, cv2.COLOR_RGBA2BGR)  # the view is read before the export is released
    return cv2.cvtColor(np.asarray(page), cv2.COLOR_RGB2BGR)


def _export(page: Image.Image) -> tuple[np.ndarray, tuple[Any, Any]] | None:
    """A read-only ``(height, width, 4)`` view of an RGB image's memory and the capsules that keep it valid (the
    view must not outlive them); None where Pillow does not export this image."""
    export = getattr(page, "__arrow_c_array__", None)
    if export is None or page.width == 0 or page.height == 0:
        return None
    try:
        capsules = export()
    except (ValueError, TypeError, NotImplementedError):  # rows in several blocks; a mode Arrow does not carry
        return None
    schema_capsule, array_capsule = capsules
    schema = _ArrowSchema.from_address(_capsule_pointer(schema_capsule, b"arrow_schema"))
    array = _ArrowArray.from_address(_capsule_pointer(array_capsule, b"arrow_array"))
    pixels = page.width * page.height
    if schema.format != b"+w:4" or schema.n_children != 1 or schema.children[0].contents.format != b"C":
        return None
    if array.length != pixels or array.offset != 0 or array.n_children != 1:
        return None
    values = array.children[0].contents
    if values.length != pixels * 4 or values.offset != 0 or values.n_buffers != 2 or not values.buffers[1]:
        return None
    memory = (ctypes.c_uint8 * (pixels * 4)).from_address(values.buffers[1])
    view = np.frombuffer(memoryview(memory), np.uint8).reshape(page.height, page.width, 4)
    view.flags.writeable = False
    return view, capsules
