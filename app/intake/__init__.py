"""How a document comes in, for every endpoint: the request's fields as a validated model (``request.py``), the
engine chosen and the document received (``receiver.py``), its bytes stored from an upload, base64 or a URL
(``sources.py``, ``url_fetch.py``). Reading HTTP bodies is the API's part (:mod:`app.api.body`,
:mod:`app.api.intake`)."""
