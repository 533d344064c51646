"""The S3 outbox on a real directory: upload order, coalescing of job.json, durability across a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

from app.storage.s3.outbox import Entry, Item, Outbox, Step

JOB = "0123456789abcdef0123456789abcdef"  # pragma: allowlist secret


def item(name: str, completes_result: bool = False) -> Item:
    return Item(f"files/{name}", f"prefix/{name}", "application/json", completes_result)


def job_state(root: Path, status: str) -> Item:
    path = root / "jobs" / JOB / "job.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": status}))
    return Item(f"jobs/{JOB}/job.json", f"prefix/jobs/{JOB}/job.json", "application/json")


def run(outbox: Outbox, entry: Entry) -> list[tuple[str, bytes | None]]:
    """Upload steps of ``entry`` until it is empty, as an uploader thread would (every upload succeeds)."""
    steps = []
    while (step := outbox.next_step(entry)) is not None:
        steps.append((step.item.key, step.body))
        outbox.done(entry, step)
    return steps


def running_state_step(tmp_path: Path) -> tuple[Outbox, Entry, Step]:
    """An outbox holding the job's 'running' state, claimed, its first step (that state's upload) taken."""
    outbox = Outbox(tmp_path / ".outbox", tmp_path)
    outbox.load()
    outbox.add(JOB, job_state=job_state(tmp_path, "running"))
    entry = outbox.claim(time.monotonic())
    assert entry is not None
    step = outbox.next_step(entry)
    assert isinstance(step, Step)
    return outbox, entry, step


def test_files_in_order_then_job_state_read_when_its_turn_comes(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / ".outbox", tmp_path)
    outbox.load()
    outbox.add(JOB, [item("p1"), item("p2")], job_state=job_state(tmp_path, "running"))
    job_state(tmp_path, "succeeded")  # written after the add: the upload sends what is on disk then
    entry = outbox.claim(time.monotonic())
    assert entry is not None and outbox.claim(time.monotonic()) is None  # one thread per entry
    assert run(outbox, entry) == [
        ("prefix/p1", None),
        ("prefix/p2", None),
        (f"prefix/jobs/{JOB}/job.json", b'{"status": "succeeded"}'),
    ]
    assert outbox.entries == {} and list((tmp_path / ".outbox").iterdir()) == []
    assert outbox.stats == (0, 0, None)


def test_a_final_job_state_never_overtakes_the_result(tmp_path: Path) -> None:
    """The service adds the result files, then writes job.json 'succeeded', while an upload is under way."""
    outbox, entry, first = running_state_step(tmp_path)
    assert first.body == b'{"status": "running"}'
    # Meanwhile, on the service's side:
    outbox.add(JOB, [item("result.md"), item("result.json", completes_result=True)], result=True)
    outbox.add(JOB, job_state=job_state(tmp_path, "succeeded"))
    assert outbox.result_pending(JOB)
    outbox.done(entry, first)
    order = run(outbox, entry)
    assert [key for key, _ in order] == ["prefix/result.md", "prefix/result.json", f"prefix/jobs/{JOB}/job.json"]
    assert order[-1][1] == b'{"status": "succeeded"}'
    assert not outbox.result_pending(JOB)


def test_entries_survive_a_restart_in_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / ".outbox", tmp_path)
    outbox.load()
    state = job_state(tmp_path, "succeeded")
    outbox.add(JOB, [item("p1")], job_state=state)
    outbox.add(JOB, [item("result.md"), item("result.json", completes_result=True)], result=True)
    outbox.add(JOB, [item("p1")])  # the same key again: moved to the end, not duplicated
    other = "f" * 32
    outbox.add(other, [item("x")])
    (tmp_path / ".outbox" / f"{'e' * 32}.json").write_text("{not json")

    again = Outbox(tmp_path / ".outbox", tmp_path)
    assert again.load() == 2
    entry = again.entries[JOB]
    assert [i.key for i in entry.items] == ["prefix/result.md", "prefix/result.json", "prefix/p1"]
    assert entry.job_state == state and entry.result and again.result_pending(JOB)
    assert again.stats[:2] == (2, 1)
    assert (tmp_path / ".outbox" / f"{'e' * 32}.broken").exists()  # set aside, not lost, not retried
    oldest = again.claim(time.monotonic())
    assert oldest is not None and oldest.job_id == JOB  # oldest first


def test_a_failed_job_state_upload_is_retried_after_the_pause(tmp_path: Path) -> None:
    outbox, entry, step = running_state_step(tmp_path)
    assert entry.job_state is None
    retry_at = time.monotonic() + 30
    outbox.failed(entry, step, retry_at)
    assert entry.job_state == step.item and entry.failures == 1 and not entry.busy
    assert outbox.claim(time.monotonic()) is None and outbox.next_due() == retry_at
    assert outbox.claim(retry_at) is entry


def test_a_vanished_job_state_is_skipped(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / ".outbox", tmp_path)
    outbox.load()
    outbox.add(JOB, job_state=Item("jobs/gone/job.json", "prefix/jobs/gone/job.json", "application/json"))
    entry = outbox.claim(time.monotonic())
    assert entry is not None and outbox.next_step(entry) is None and outbox.entries == {}
