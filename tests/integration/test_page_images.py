"""``GET /jobs/{id}/pages/{n}/image``: the page as the engine saw it, so that the result's boxes fit it.

The job's document is kept until the retention clean-up (``KEEP_JOB_INPUTS``, on by default) and
rendered again on request; with the setting off it is deleted when the job finishes and the image is 410.
"""

from __future__ import annotations

import asyncio
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from app.documents import Limits, PdfDocument
from app.engines.pp_ocr import PpOcrEngine
from app.main import create_app
from app.settings import Settings
from tests.support.documents import image_bytes, page_lines, render_page, text_pdf
from tests.support.server import ServiceProcess, ThreadServer, wait_for

pytestmark = pytest.mark.integration


def run_job(client: httpx.Client, name: str, data: bytes, **form: str) -> dict[str, Any]:
    """Submit a document, wait for the job; returns the result."""
    accepted = client.post("/jobs", files={"file": (name, data)}, data=form)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["status"] not in ("queued", "running"), 120, "job")
    response = client.get(f"/jobs/{job_id}/result")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def fetch_image(client: httpx.Client, job_id: str, number: int) -> Image.Image:
    response = client.get(f"/jobs/{job_id}/pages/{number}/image")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    return Image.open(io.BytesIO(response.content))


def test_pdf_page_is_rendered_at_the_job_dpi(client: httpx.Client, service: ServiceProcess) -> None:
    pdf = text_pdf(3)
    result = run_job(client, "three.pdf", pdf, pages="2", dpi="100")
    page = result["pages"][0]
    image = fetch_image(client, result["id"], 2)
    assert image.size == (page["width"], page["height"]) == (827, 1170)  # A4 at 100 dpi
    with PdfDocument(_write(service.output_dir / "three.pdf", pdf), Limits(10, 10**8)) as document:
        expected = document.render(2, 100)
    difference = ImageStat.Stat(ImageChops.difference(image.convert("L"), expected.convert("L"))).mean[0]
    assert difference < 2.0  # the same page (JPEG noise only); page 1 or 3 would differ along every text line
    top = min(block["bbox"][1] for block in page["blocks"])
    assert ImageStat.Stat(image.convert("L").crop((0, 0, page["width"], int(top) - 4))).extrema[0][0] > 200  # blank
    assert (service.output_dir / "jobs" / result["id"] / "input").is_file()  # kept until the retention clean-up

    for number, code in ((1, "page_not_found"), (3, "page_not_found"), (4, "page_not_found")):
        response = client.get(f"/jobs/{result['id']}/pages/{number}/image")
        assert (response.status_code, response.json()["error"]["code"]) == (404, code)
    assert client.get(f"/jobs/{result['id']}/pages/0/image").status_code == 422
    assert client.get(f"/jobs/{'0' * 32}/pages/1/image").json()["error"]["code"] == "job_not_found"
    assert client.get("/jobs/..%2F..%2Fetc/pages/1/image").status_code == 404


def test_tiff_frames_and_large_images(client: httpx.Client) -> None:
    frames = [render_page(page_lines(n)[:2], size=size, top=40) for n, size in ((1, (900, 300)), (2, (700, 500)))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate")
    result = run_job(client, "two.tiff", buffer.getvalue())
    assert (
        fetch_image(client, result["id"], 2).size
        == (700, 500)
        == tuple(result["pages"][1][key] for key in ("width", "height"))
    )

    wide = render_page(page_lines(3)[:1], size=(3000, 600), font_size=60, top=60)
    result = run_job(client, "wide.png", image_bytes(wide, "PNG"))
    assert result["pages"][0]["width"] == 3000
    assert fetch_image(client, result["id"], 1).size == (2000, 400)  # at most 2000 px a side, same proportions


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _server(tmp_path: Path, **settings: Any) -> tuple[Any, ThreadServer]:
    app = create_app(Settings(output_dir=tmp_path, **settings), engine=PpOcrEngine(parallel=1, threads=1))
    return app, ThreadServer(app)


def test_without_kept_inputs_the_image_is_gone(tmp_path: Path) -> None:
    _, server = _server(tmp_path, keep_job_inputs=False)
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        wait_for(lambda: client.get("/health").json()["status"] == "healthy", 60, "engine ready")
        result = run_job(client, "one.pdf", text_pdf(1), dpi="75")
        response = client.get(f"/jobs/{result['id']}/pages/1/image")
        assert response.status_code == 410
        assert response.json()["error"]["code"] == "page_image_unavailable"
        # Removed just after the final record is stored (a crash in between must not lose the document of a job
        # that is not finished): its status can say so a moment before.
        wait_for(lambda: not (tmp_path / "jobs" / result["id"] / "input").exists(), 10, "the document's removal")
        assert client.get(f"/jobs/{result['id']}/result").status_code == 200  # the result itself stays


def test_retention_clean_up_deletes_the_kept_input(tmp_path: Path) -> None:
    app, server = _server(tmp_path)
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        wait_for(lambda: client.get("/health").json()["status"] == "healthy", 60, "engine ready")
        result = run_job(client, "one.pdf", text_pdf(1), dpi="75")
        folder = tmp_path / "jobs" / result["id"]
        assert (folder / "input").is_file()
        assert client.get(f"/jobs/{result['id']}/pages/1/image").status_code == 200
        later = datetime.now(timezone.utc) + timedelta(hours=73)  # past RESULT_TTL_HOURS (72)
        assert asyncio.run(app.state.service.cleanup(now=later)) == 1
        assert not folder.exists()
        gone = client.get(f"/jobs/{result['id']}/pages/1/image")
        assert (gone.status_code, gone.json()["error"]["code"]) == (410, "job_expired")  # deleted, not unknown
