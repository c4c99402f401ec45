"""The reading plan, the reading clock and the reference CSV: pure parts of the reader study."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from app.readerstudy.design import plan_reads
from app.readerstudy.reference import parse_reference_csv
from app.readerstudy.timing import reading_time_s, step

MODES = ["unassisted", "concurrent", "second-read"]


def test_crossover_reads_every_case_once_per_mode_and_reader_with_mixed_sessions() -> None:
    cases, readers = list(range(10, 22)), [1, 2, 3]
    plan = plan_reads(cases, readers, MODES, "crossover", seed=7)
    assert len(plan) == len(cases) * len(readers) * len(MODES)
    assert Counter((p.reader, p.case, p.mode) for p in plan).most_common(1)[0][1] == 1
    for reader in readers:
        for session in range(3):
            in_session = [p for p in plan if p.reader == reader and p.session == session]
            # Every case once per session, positions 0..n-1, and each mode on a third of the cases.
            assert sorted(p.case for p in in_session) == cases
            assert sorted(p.position for p in in_session) == list(range(len(cases)))
            assert Counter(p.mode for p in in_session) == {m: 4 for m in MODES}
    # Counterbalanced: in session 0 the readers read each case in different modes.
    first = {(p.reader, p.case): p.mode for p in plan if p.session == 0}
    assert all(len({first[(r, c)] for r in readers}) == 3 for c in cases)


def test_orders_are_reproducible_per_reader_and_differ_between_readers() -> None:
    def order(seed: int, reader: int) -> list[int]:
        plan = plan_reads(list(range(30)), [1, 2], MODES, "crossover", seed)
        rows = sorted((p for p in plan if p.reader == reader and p.session == 0), key=lambda p: p.position)
        return [p.case for p in rows]

    assert order(5, 1) == order(5, 1)
    assert order(5, 1) != order(5, 2)
    assert order(5, 1) != order(6, 1)


def test_sequential_reads_the_modes_of_a_case_back_to_back_in_the_given_order() -> None:
    plan = plan_reads([1, 2, 3], [9], ["unassisted", "concurrent"], "sequential", seed=1)
    rows = sorted(plan, key=lambda p: p.position)
    assert [p.mode for p in rows] == ["unassisted", "concurrent"] * 3
    assert [p.case for p in rows][::2] == [p.case for p in rows][1::2]
    assert {p.session for p in plan} == {0}


def test_plan_refuses_empty_or_repeated_inputs() -> None:
    with pytest.raises(ValueError):
        plan_reads([], [1], MODES, "crossover", 0)
    with pytest.raises(ValueError):
        plan_reads([1], [1], ["concurrent", "concurrent"], "crossover", 0)


def test_clock_excludes_the_part_of_each_gap_over_the_threshold() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    clock = step(t0, 0.0, t0 + timedelta(seconds=20), threshold_s=30)  # active
    assert clock.idle_s == 0
    clock = step(clock.last_seen_at, clock.idle_s, t0 + timedelta(seconds=120), threshold_s=30)  # 100 s gap
    assert clock.idle_s == pytest.approx(70)
    assert reading_time_s(t0, clock.last_seen_at, clock.idle_s) == pytest.approx(50)
    # An event stamped before the last one adds nothing.
    assert step(clock.last_seen_at, 70, t0, 30).idle_s == 70


def test_reference_csv_by_uid_or_id_with_errors_naming_the_line() -> None:
    rows = parse_reference_csv("\ufeffStudy_UID,label\n1.2.3,normal\n\n,\n")
    assert [(r.key, r.value, r.label) for r in rows] == [("study_uid", "1.2.3", "normal")]
    rows = parse_reference_csv("study_id,label\n4,Anencephaly\n")
    assert [(r.key, r.value) for r in rows] == [("study_id", "4")]
    with pytest.raises(ValueError, match="header"):
        parse_reference_csv("uid,diagnosis\n1,normal\n")
    with pytest.raises(ValueError, match="line 3"):
        parse_reference_csv("study_id,label\n4,normal\n4,normal\n")
    with pytest.raises(ValueError, match="line 2"):
        parse_reference_csv("study_id,label\nx,normal\n")
