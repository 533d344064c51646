"""The chaos run (scripts/chaos_replicas.py), shortened to two kills, so that the script cannot rot: replicas on
one SeaweedFS bucket, one SIGTERM and one SIGKILL (seed 10) while jobs come in, every job finished exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_short_chaos_run_loses_no_job(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\n<!-- bench:chaos -->\nstale numbers\n<!-- /bench:chaos -->\n")
    summary = tmp_path / "summary.json"
    options = "--replicas 2 --calm 3 --duration 60 --kill-interval 5 --max-kills 2 --seed 10 --in-flight 3"
    options += " --min-pages 3 --max-pages 5 --finish-timeout 60 --busy-victims"
    command = [sys.executable, "scripts/chaos_replicas.py", *options.split()]
    command += ["--write", str(report), "--summary", str(summary)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=170, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    numbers = json.loads(summary.read_text())
    assert numbers["kills"] == {"TERM": 1, "KILL": 1}
    assert numbers["accepted"] >= 3 and numbers["pages"] > 0
    assert all(not ids for ids in numbers["problems"].values()), numbers["problems"]
    assert set(numbers["problems"]) >= {"lost", "stuck", "finished twice", "status regression"}
    assert numbers["takeovers"] >= numbers["takeover_log_lines"] >= 1  # --busy-victims: each kill hits a job
    resumed = numbers["resumed_after_kill"]
    assert resumed["TERM"] + resumed["KILL"] >= 1 and resumed["not killed"] == 0
    written = report.read_text()
    assert "stale numbers" not in written and "| **Jobs lost** (accepted, not succeeded) | **0** |" in written
    assert "--seed 10" in written
