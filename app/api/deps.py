"""Dependencies shared by routes."""

from __future__ import annotations

from fastapi import Request

from app.jobs.service import OcrService
from app.settings import Settings


def get_service(request: Request) -> OcrService:
    service: OcrService = request.app.state.service
    return service


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings
