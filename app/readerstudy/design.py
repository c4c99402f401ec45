"""Who reads which case in which mode, in which session and order: the reading plan.

Crossover: every reader reads every case once per mode, in as many sessions as there are modes.
The cases are cut into as many blocks as modes, and in session ``s`` reader ``r`` reads block
``b`` in mode ``modes[(b + s + r) % M]`` (a Latin square): each session mixes all modes, each
case meets each mode once per reader, and the readers start from different modes, which
counterbalances order effects. The washout (days between a reader's sessions on the same case)
is applied when the reads are handed out, not here.

Sequential: each case is read in the modes one after another, in the order given, in one
session (the design in which the aided read directly follows the unaided one).

Orders are shuffled with ``random.Random`` seeded by a string of the study's seed, the reader
and the session: the same study gives every reader the same order on every run and machine.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Design = Literal["crossover", "sequential"]


@dataclass(frozen=True)
class PlannedRead:
    reader: int
    case: int
    mode: str
    session: int
    position: int


def _shuffled(items: Sequence[int], seed: int, reader: int, session: int) -> list[int]:
    order = list(items)
    random.Random(f"{seed}:{reader}:{session}").shuffle(order)
    return order


def _blocks(cases: Sequence[int], n_blocks: int) -> dict[int, int]:
    """Case → block, in blocks of near-equal size (the cases as given, cut in order)."""
    return {case: index * n_blocks // len(cases) for index, case in enumerate(cases)}


def plan_reads(
    cases: Sequence[int], readers: Sequence[int], modes: Sequence[str], design: Design, seed: int
) -> list[PlannedRead]:
    """Every read of the study. ``cases`` and ``readers`` are ids; positions count from 0 per
    reader and session. The block of a case does not depend on the reader (counterbalancing is
    by the reader's rotation), so one block is read aided by some readers while others read it
    unaided in the same session."""
    if not cases or not readers or not modes:
        raise ValueError("a reader study needs cases, readers and modes")
    if len(set(modes)) != len(modes):
        raise ValueError("each mode once")
    plan: list[PlannedRead] = []
    n_modes = len(modes)
    if design == "crossover":
        block = _blocks(sorted(cases), n_modes)
        for r_index, reader in enumerate(readers):
            for session in range(n_modes):
                order = _shuffled(sorted(cases), seed, reader, session)
                for position, case in enumerate(order):
                    mode = modes[(block[case] + session + r_index) % n_modes]
                    plan.append(PlannedRead(reader, case, mode, session, position))
    elif design == "sequential":
        for reader in readers:
            order = _shuffled(sorted(cases), seed, reader, 0)
            for c_index, case in enumerate(order):
                for m_index, mode in enumerate(modes):
                    plan.append(PlannedRead(reader, case, mode, 0, c_index * n_modes + m_index))
    else:
        raise ValueError(f"unknown design {design!r}")
    return plan
