"""Script consistency (placeholder while being written)."""

from __future__ import annotations

from collections.abc import Sequence

from app.schemas import Block


def fix_lookalikes(lines: Sequence[Block], languages: Sequence[str]) -> list[Block]:
    return list(lines)
