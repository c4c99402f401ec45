"""The reading clock: time from the case being shown to the answer, idle gaps excluded.

The server sees a read's events (shown, the reader page's activity pings, the first answer,
the answer). A gap between two consecutive events longer than the idle threshold counts as the
reader having stepped away: the part of the gap beyond the threshold is excluded from the
reading time and recorded as idle. The reader page pings while the reader moves or types, so
only true absences produce such gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ClockStep:
    """The read's running clock after one event."""

    last_seen_at: datetime
    idle_s: float


def step(last_seen_at: datetime, idle_s: float, now: datetime, threshold_s: float) -> ClockStep:
    """Advance the clock to ``now``; an event earlier than the last one (clock skew) adds nothing."""
    gap = max((now - last_seen_at).total_seconds(), 0.0)
    return ClockStep(last_seen_at=max(now, last_seen_at), idle_s=idle_s + max(gap - threshold_s, 0.0))


def reading_time_s(shown_at: datetime, now: datetime, idle_s: float) -> float:
    """Seconds from shown to ``now`` less the idle seconds (never negative)."""
    return max((now - shown_at).total_seconds() - idle_s, 0.0)
