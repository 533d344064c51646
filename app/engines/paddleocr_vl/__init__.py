"""The ``paddleocr-vl`` engine: PaddleOCR-VL's pipeline in this process, its 0.9B VLM here or on a server.

Modules: :mod:`.engine` (the :class:`~app.engines.base.OcrEngine`), :mod:`.config` (settings -> pipeline
arguments, pure), :mod:`.pipeline` (what is done to paddlex's pipeline object), :mod:`.mapping` (its results ->
our blocks, pure), and for a VLM server :mod:`.client` (the HTTP transport and the start-up model check),
:mod:`.auth` (the bearer credential), :mod:`.limiter` (how many requests the server gets at once) and
:mod:`.status` (what ``/health`` and ``/metrics`` show of it).

Importing the package imports nothing heavy: ``paddleocr`` is imported when the engine loads.
"""
