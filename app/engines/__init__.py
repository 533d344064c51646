"""OCR engines behind one interface (:mod:`app.engines.base`)."""
