"""Dependencies shared by routes, as ``Annotated`` types: ``service: Service``, ``receiver: Receiver``, ...

They only read the app's state, so they are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool,
a hand-off to a worker thread and back for every dependency of every request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.intake.receiver import DocumentReceiver
from app.jobs.service import OcrService
from app.settings import Settings


async def get_service(request: Request) -> OcrService:
    service: OcrService = request.app.state.service
    return service


async def get_receiver(request: Request) -> DocumentReceiver:
    receiver: DocumentReceiver = request.app.state.receiver
    return receiver


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Service = Annotated[OcrService, Depends(get_service)]
"""The OCR facade (jobs: submit, wait, result, ...)."""
Receiver = Annotated[DocumentReceiver, Depends(get_receiver)]
"""Where documents come in: the engine is chosen and the document received (see :mod:`app.intake.receiver`)."""
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
