"""Page-sized buffers kept for reuse while the VL engine streams pages to a VLM server.

Every page passes through several full-size images on its way (decoded, turned into the BGR array paddlex reads,
cropped, turned back into the RGB image it encodes): ~6.5 MB each for an A4 page at 150 dpi. Freed and allocated
again page after page, that memory goes back to the kernel and comes back as fresh pages, each one a page fault
the process pays for in CPU time: measured, a third of the service's own CPU per page (BENCHMARKS.md). So, once
the engine knows it serves a VLM server: Pillow keeps up to :data:`PIL_BLOCKS` freed image blocks for the next
image, and glibc serves allocations under :data:`MMAP_BELOW` from its heaps and keeps up to :data:`TRIM_ABOVE` of
freed memory before giving it back. The cost is memory held after a burst (at most ~:data:`PIL_BLOCKS` page
images plus the heaps' retained part); the CPU engines do not call this.
"""

from __future__ import annotations

import logging

from app.malloc_arenas import mallopt

log = logging.getLogger("app.engines.paddleocr_vl")

#: Freed Pillow image blocks kept for reuse (each up to 16 MiB; ~6.5 MB for an A4 page at 150 dpi).
PIL_BLOCKS = 32
#: Allocations below this many bytes come from malloc's heaps, not from fresh mmaps.
MMAP_BELOW = 32 * 1024 * 1024
#: Freed memory at the top of a heap is given back to the kernel only beyond this many bytes.
TRIM_ABOVE = 128 * 1024 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def reuse_page_buffers() -> list[str]:
    """Keep page-sized buffers for reuse (see the module docstring); what was set, for the log. Where the C library
    has no ``mallopt`` (not glibc), only Pillow's part."""
    from PIL import _imaging  # Pillow's C core (Image.core), where its block cache is set

    done = []
    if _imaging.get_blocks_max() < PIL_BLOCKS:
        _imaging.set_blocks_max(PIL_BLOCKS)
        done.append(f"Pillow keeps {PIL_BLOCKS} image blocks")
    if mallopt(_M_MMAP_THRESHOLD, MMAP_BELOW) and mallopt(_M_TRIM_THRESHOLD, TRIM_ABOVE):
        done.append(f"malloc keeps up to {TRIM_ABOVE // 2**20} MB freed")
    return done
