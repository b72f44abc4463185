"""The instance's count of requests in flight (`revoctl.runtime.in_flight`): the slot file
that ``revoctl serve --workers N`` shares among its workers admits exactly up to its cap,
across processes, and a dead worker's count does not hold the cap."""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from revoctl.runtime.in_flight import LocalInFlight, SharedInFlight, create_slot_file

CAP = 3
PROCESSES = 4
ROUNDS = 400


@pytest.fixture
def slot_file() -> Any:
    path = create_slot_file(CAP, workers=PROCESSES)
    yield path
    path.unlink(missing_ok=True)


def _hammer(path: str, start: Any, held: Any, worst: Any, admitted: Any, refused: Any) -> None:
    """``ROUNDS`` admissions once every process is ready, each holding a moment when
    admitted; ``held`` counts the admitted requests of every process at once, ``worst``
    keeps its highest."""
    in_flight = SharedInFlight(path)
    start.wait()
    rng = random.Random(os.getpid())
    for _ in range(ROUNDS):
        if not in_flight.acquire():
            with refused.get_lock():
                refused.value += 1
            continue
        with held.get_lock():
            held.value += 1
            worst.value = max(worst.value, held.value)
        with admitted.get_lock():
            admitted.value += 1
        time.sleep(rng.random() / 1000)
        with held.get_lock():
            held.value -= 1
        in_flight.release()


def test_processes_sharing_the_slot_file_never_hold_more_than_the_cap(slot_file: Path) -> None:
    context = multiprocessing.get_context("spawn")
    held, worst = context.Value("i", 0), context.Value("i", 0)
    admitted, refused = context.Value("i", 0), context.Value("i", 0)
    start = context.Barrier(PROCESSES)
    counters = (held, worst, admitted, refused)
    workers = [
        context.Process(target=_hammer, args=(str(slot_file), start, *counters))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert worst.value == CAP  # reached, never passed
    assert refused.value > 0  # the processes did contend
    assert admitted.value + refused.value == PROCESSES * ROUNDS
    assert SharedInFlight(slot_file).total() == 0  # every admission was released


def _hold_and_die(path: str, count: int) -> None:
    in_flight = SharedInFlight(path)
    for _ in range(count):
        assert in_flight.acquire()
    os._exit(0)  # as SIGKILL leaves it: no release


def test_a_dead_workers_count_is_reclaimed(slot_file: Path) -> None:
    survivor = SharedInFlight(slot_file)
    assert survivor.acquire()
    context = multiprocessing.get_context("spawn")
    dead = context.Process(target=_hold_and_die, args=(str(slot_file), CAP - 1))
    dead.start()
    dead.join(30)
    assert survivor.total() == CAP  # the dead worker's count is still in the file
    # The refused admission sweeps the dead pid's slot: the cap is whole again at once.
    assert survivor.acquire()
    assert survivor.total() == 2
    # And a worker started in its place takes a slot with a count of 0.
    replacement = SharedInFlight(slot_file)
    assert replacement.acquire()
    assert not replacement.acquire()  # 3 held: the cap
    assert (survivor.held(), replacement.held()) == (2, 1)


def test_one_process_counts_in_memory() -> None:
    in_flight = LocalInFlight(2)
    assert in_flight.acquire() and in_flight.acquire()
    assert not in_flight.acquire()
    in_flight.release()
    assert in_flight.acquire()
    assert in_flight.total() == 2
