"""Intra-op CPU threads for loops of many small ops (the tokenizer's farthest point sampling).

FPS picks its G centres one after another; each step is a handful of ops on (B, N) tensors, a
few microseconds to a fraction of a millisecond each. With several intra-op threads every such
op is an OpenMP parallel region that ends at a barrier. On a quiet machine that pays off (the
tokenizer's grouping at B=8, N=2048 runs about 1.5 × faster on two threads than on one); on a
busy one, where other processes hold the cores, a barrier waits for a thread the scheduler has
pushed off its core, sometimes for a whole time slice, and the loop slows by up to two orders of
magnitude. One thread slows only with the load itself.

Which count is faster depends on the load, which changes while a program runs, so
:class:`AdaptiveThreads` measures it: the loop's steps run in rounds, each round timed on one
thread or on the caller's count. Several threads are chosen when their latest time per step
beats one thread's by :attr:`AdaptiveThreads.margin`, else one thread. Now and then a round
re-tries the count not chosen (after 4 to 64 rounds; sooner while the choice keeps changing).
A round on several threads that falls clearly behind one thread's pace is cut short after the
step that shows it and finished on one thread, and after such a loss the next re-try waits at
least 20 times as long as the lost round took, so that re-tries cost about 5 % at most on a busy
machine. The thread count changes only the speed, never a result: the ops of the loop give the
same values on any number of threads.

Thread safety: with the OpenMP backend of the CPU wheels, ``torch.set_num_threads`` sets the
count of the calling thread only, so a concurrent caller in another Python thread keeps its own
count (a thread whose first torch op falls inside a round starts with that round's count).
Statistics are shared between threads under a lock.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

#: Below this much work per step (B·N points) the ops are too small for a second thread to
#: matter: such loops always run on one thread and keep no statistics.
MIN_ADAPTIVE_WORK = 4096


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op CPU threads, then restore the caller's count."""
    before = torch.get_num_threads()
    if before == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Arm:
    """What is known about one kind of loop: the latest seconds per step and point of each
    thread count, the loop's timed seconds so far and when to re-try the count not in use."""

    threads: int
    per_step: dict[int, float] = field(default_factory=dict)
    clock: float = 0.0
    next_probe: float = 0.0
    probe_interval: int = 0

    def best(self) -> int | None:
        """The preferred count; ``None`` until both were measured.

        Several threads must be clearly faster (by :attr:`AdaptiveThreads.margin`) to be preferred:
        one thread is a little slower when they are, they are much slower when the cores are busy.
        """
        if len(self.per_step) < 2:
            return None
        return self.threads if self.per_step[self.threads] * AdaptiveThreads.margin < self.per_step[1] else 1


class AdaptiveThreads:
    """Chooses, round by round, between one intra-op thread and the caller's count for a loop.

    One instance serves one kind of loop (the FPS loop); its statistics are kept per caller
    thread count, per power of two of the work per step and per ``kind``.
    """

    #: several threads are preferred only when their latest time per step is this much lower
    margin = 1.2
    #: rounds between two re-tries of the count not in use: this many after a re-try that won,
    #: twice as many after each one that lost, up to ``max_probe_interval``; and at least
    #: ``probe_cost_factor`` × what the last lost re-try took (so that on a busy machine, where
    #: one step on idle threads can take a scheduler time slice, re-tries cost ≤ 1/factor)
    min_probe_interval = 4
    max_probe_interval = 64
    probe_cost_factor = 20.0
    #: a round on several threads stops once it has taken longer than ``abort_ratio`` × the
    #: steps it ran at one thread's pace, plus ``abort_slack_steps`` steps (waking threads)
    abort_ratio = 1.5
    abort_slack_steps = 4

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._arms: dict[tuple[int, int, str], _Arm] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._pinned: int | None = None
        #: thread count of every round of the latest call (for tests and the benchmark)
        self.last_counts: list[int] = []

    @contextlib.contextmanager
    def pinned(self, count: int) -> Iterator[None]:
        """Run every loop of the block on ``count`` threads (capped at the caller's count), not
        adaptively: for comparisons such as the benchmark's. Not meant for concurrent callers."""
        before, self._pinned = self._pinned, count
        try:
            yield
        finally:
            self._pinned = before

    def steps(self, device: torch.device, work: int, num_steps: int, round_steps: int, kind: str = "") -> Iterator[int]:
        """Step indices 0 … ``num_steps`` − 1, the thread count set round by round.

        Use it as ``with contextlib.closing(threads.steps(...)) as steps: for i in steps: ...``:
        closing restores the caller's thread count even when the loop is left early.

        Args:
            device: where the loop's tensors live; only CPU loops change threads.
            work: points per step (B·N): the size the statistics are kept for.
            num_steps: steps of the loop.
            round_steps: steps per timed round (align it with any periodic larger op).
            kind: loops of different cost per step (e.g. FPS alone, FPS + kNN) keep apart.
        """
        threads = torch.get_num_threads()
        arm = None
        if device.type != "cpu" or threads == 1:
            fixed = threads
        elif self._pinned is not None:
            fixed = min(self._pinned, threads)
        elif work < MIN_ADAPTIVE_WORK:
            fixed = 1
        else:
            fixed = threads
            with self._lock:
                arm = self._arms.setdefault((threads, work.bit_length(), kind), _Arm(threads))
        counts: list[int] = []
        self.last_counts = counts
        if arm is None:
            counts.append(fixed)
            with intra_op_threads(fixed):
                yield from range(num_steps)
            return
        for first in range(0, num_steps, round_steps):
            last = min(first + round_steps, num_steps)
            with self._lock:
                count, probe = self._choose(arm)
                # Several threads stop as soon as they fall clearly behind one thread's pace.
                pace = arm.per_step.get(1, math.inf) * work if count > 1 else math.inf
            slack, allowed = pace * self.abort_slack_steps, pace * self.abort_ratio  # seconds
            counts.append(count)
            step = first
            with intra_op_threads(count):
                start = self._clock()
                while step < last:
                    yield step
                    step += 1
                    if self._clock() - start > slack + allowed * (step - first):
                        break
                seconds = self._clock() - start
            cut_short = step < last
            self._record(arm, count, probe or cut_short, seconds, (step - first) * work, round_steps * work)
            if cut_short:  # finish the round on one thread
                counts.append(1)
                with intra_op_threads(1):
                    yield from range(step, last)

    def _choose(self, arm: _Arm) -> tuple[int, bool]:
        """(count of the next round, whether the round re-tries the count not preferred)."""
        for count in (1, arm.threads):  # a loop of a new kind: measure both counts first
            if count not in arm.per_step:
                return count, False
        best = arm.best()
        if arm.clock >= arm.next_probe:
            return (arm.threads if best == 1 else 1), True
        return best, False

    def _record(self, arm: _Arm, count: int, probe: bool, seconds: float, work: int, round_work: int) -> None:
        """Note a round's time: ``seconds`` for ``work`` point-steps (a full round: ``round_work``)."""
        with self._lock:
            before = arm.best()
            arm.per_step[count] = seconds / work
            arm.clock += seconds
            if before is not None and not probe:
                return
            after = arm.best()
            won = before is None or after != before
            if won:  # check the other count again soon
                arm.probe_interval = self.min_probe_interval
            else:
                arm.probe_interval = min(2 * arm.probe_interval, self.max_probe_interval)
            gap = arm.probe_interval * arm.per_step[after or count] * round_work
            if not won:
                gap = max(gap, self.probe_cost_factor * seconds)
            arm.next_probe = arm.clock + gap

    def reset(self) -> None:
        """Forget every statistic (tests; a changed machine)."""
        with self._lock:
            self._arms.clear()
