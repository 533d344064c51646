"""The bursts bench's verdicts: the learned limit's rows judged against the issue's targets and against the burst
with the limit fixed at the capacity (the yardstick: what the machine gives when the limit costs nothing)."""

from __future__ import annotations

from typing import Any

from scripts.bench_vlm_bursts import render_bursts, verdicts


def row(start: str, pages_s: float, *, fixed: int | None = None, metrics: bool = False) -> dict[str, Any]:
    return {
        "capacity": 64,
        "clients": 64,
        "per_client": 4,
        "start": start,
        "fixed": fixed,
        "metrics": metrics,
        "pages_s": pages_s,
        "ceiling": 32.0,
        "errors": 0,
        "limit_before": 16,
        "limit_after": 64,
        "server_queue": 1,
        "first_round_s": 1.0,
        "cpu_per_page": 0.05,
        "cores_busy": 0.2,  # not saturated on any machine
        "load": 1.0,
    }


def test_each_learned_start_is_measured_against_the_fixed_limits_matching_burst() -> None:
    rows = [
        row("fresh", 16.0),
        row("warm", 24.0),
        row("restarted", 30.0, metrics=True),
        row("fresh", 20.0, fixed=64),
        row("warm", 25.0, fixed=64),
    ]
    found = verdicts(rows, [])
    fresh, warm, restarted, fixed_fresh, fixed_warm = found
    assert "50.0% of the ceiling (target 85%): missed; 80% of the pages/s the limit fixed at 64 gets (62%" in fresh
    assert "75.0% of the ceiling (target 90%): missed; 96% of the pages/s the limit fixed at 64 gets (78%" in warm
    # restarted has no fixed burst of its own: the fixed limit's warm one is its yardstick
    assert "(queue): 93.8% of the ceiling (target 90%): met; 120% of the pages/s the limit fixed at 64" in restarted
    assert "fresh, the limit fixed at 64 (nothing to learn): 62.5% of the ceiling" in fixed_fresh
    assert "warm, the limit fixed at 64 (nothing to learn): 78.1% of the ceiling" in fixed_warm


def test_without_a_fixed_burst_no_yardstick_is_claimed() -> None:
    (found,) = verdicts([row("warm", 24.0)], [])
    assert "75.0% of the ceiling (target 90%): missed (cores busy 0.20 of" in found
    assert "the limit fixed" not in found


def test_the_table_names_the_fixed_limit_as_the_signal() -> None:
    lines = render_bursts([row("warm", 24.0), row("warm", 25.0, fixed=64)], 2.0)
    assert "| warm | latency | 24.00 | 75% |" in lines[-2]
    assert "| warm | fixed 64 | 25.00 | 78% |" in lines[-1]
