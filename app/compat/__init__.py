"""The PaddleX-compatible API (``POST /layout-parsing``), so clients written for ``paddlex --serve`` work unchanged.

``schemas`` holds the request and response models, ``convert`` the pure conversions from our
:class:`~app.schemas.DocumentResult`, ``visualize`` the optional page images and ``layout_parsing``
the use case that ties them to :class:`~app.jobs.service.OcrService`.
"""

PADDLEX_PATHS = frozenset({"/layout-parsing"})
"""Paths whose errors use the PaddleX envelope ``{logId, errorCode, errorMsg}`` instead of ours."""
