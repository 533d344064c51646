"""The web page to try the service: ``GET /`` (the page), ``/ui/*`` (its CSS, JavaScript, icon) and
``/ui/config.json`` (what the page needs to know about this server).

The page is plain HTML, CSS and JavaScript modules in ``app/web/static`` (no build step, nothing from a
CDN: the container is offline). It talks to the public API only (``/health``, ``/jobs``), with the
API key the user types in, so these routes carry no documents and stay open when ``API_KEY`` is set.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.api.deps import get_settings_dep
from app.settings import Settings

STATIC_DIR = Path(__file__).resolve().parents[1] / "web" / "static"

# The page builds its DOM from text nodes only; this policy keeps anything else from running even so.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def page() -> FileResponse:
    """The single page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@router.get("/ui/config.json")
async def page_config(settings: Settings = Depends(get_settings_dep)) -> dict[str, object]:
    """Whether an API key is needed and the limits the form shows; nothing secret."""
    return {
        "api_key_required": settings.api_key is not None,
        "pdf_dpi": settings.pdf_dpi,
        "max_dpi": settings.max_dpi,
        "max_upload_mb": settings.max_upload_mb,
        "max_pages": settings.max_pages,
        "keep_job_inputs": settings.keep_job_inputs,
    }


def add_web_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/ui/``."""
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC_DIR), name="ui")
