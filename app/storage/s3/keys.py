"""Where things go in the bucket: every key and prefix the service writes, in one place.

Keys (``<prefix>`` is ``CLOUDRU_S3_PREFIX``)::

    <prefix>/<YYYY-MM-DD>/<id>/result.json, result.md, images...   the result, as in OUTPUT_DIR
    <prefix>/jobs/<id>/job.json                                    the job's record (status, progress, owner)
    <prefix>/jobs/<id>/input                                       the document (until the job ends or retention)
    <prefix>/jobs/<id>/pages/00001.json ...                        each page's result as it is produced
    <prefix>/leases/<id>.json                                      which replica runs the unfinished job, until when
    <prefix>/handover/<id>                                         a stopping replica handed the job back
    <prefix>/cancel/<id>                                           another replica was asked to cancel the job
    <RAG_EXPORT_PREFIX>/<name>.md (or .txt)                        the knowledge-base export (app.storage.rag_export)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyLayout:
    """Where things go in the bucket (see the module docstring)."""

    prefix: str

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def job(self, job_id: str) -> str:
        return self.key(f"jobs/{job_id}/job.json")

    def input(self, job_id: str) -> str:
        return self.key(f"jobs/{job_id}/input")

    def pages(self, job_id: str) -> str:
        return self.key(f"jobs/{job_id}/pages/")

    def page(self, job_id: str, number: int) -> str:
        return self.key(f"jobs/{job_id}/pages/{number:05d}.json")

    def result(self, result_dir: str, name: str = "") -> str:
        return self.key(f"{result_dir}/{name}") if name else self.key(result_dir)

    def folder(self, name: str) -> str:
        """``leases``, ``handover`` or ``cancel``: the folder's prefix, ending in ``/``."""
        return self.key(f"{name}/")

    def lease(self, job_id: str) -> str:
        return self.key(f"leases/{job_id}.json")

    def handover(self, job_id: str) -> str:
        return self.key(f"handover/{job_id}")

    def cancel(self, job_id: str) -> str:
        return self.key(f"cancel/{job_id}")

    def probe(self, name: str) -> str:
        return self.key(f".probe/{name}")
