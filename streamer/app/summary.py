"""The one closing line every command prints: what it read, published, rejected, where.

A command that could not do its job says so here and exits non-zero (``cli``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping


def rejected_text(rejected: Mapping[str, int]) -> str:
    """``rejected 12 (no_bid 10, stale 2)``, largest first; ``rejected 0`` when none."""
    total = sum(rejected.values())
    return f"rejected {total} ({reasons_text(rejected)})" if total else "rejected 0"


def reasons_text(counts: Mapping[str, int]) -> str:
    """``no_bid 10, stale 2``: counts by reason, largest first, zeros left out."""
    return ", ".join(f"{reason} {n}" for reason, n in Counter(counts).most_common() if n)


def closing_line(command: str, *, read: str, rejected: Mapping[str, int], published: str,
                 problem: str | None = None) -> str:
    """``streamer <command>: read ...; rejected ...; published ...[; FAILED: problem]``."""
    line = f"streamer {command}: read {read}; {rejected_text(rejected)}; published {published}"
    return f"{line}; FAILED: {problem}" if problem else line
