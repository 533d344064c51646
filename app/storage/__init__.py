"""Where results are kept: local disk first (:mod:`app.storage.local`)."""
