"""A client for a deployed service (a Cloud.ru Docker RUN or any URL): auth, retries, the jobs API, batch OCR.

A separate program from the server: it imports nothing from the server side, so it runs with httpx, tqdm
and pydantic-settings alone. ``python -m app.client`` is the batch client; ``scripts/check_deployment.py``
uses the same modules.
"""
