"""Progress lines when the output is not a terminal (log files, cluster jobs)."""

from __future__ import annotations

import io

from pcclora.engine.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_interval_and_one_at_the_end():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress("epoch 3", total=10, interval_s=30.0, stream=stream, clock=clock)
    for done in range(1, 11):
        clock.now = 10.0 * done  # 10 s a step
        progress.update(done, loss=1.0 / done)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "epoch 3: 3/10 (30%)  loss 0.3333  30 s, about 70 s left"
    assert [line.split(":")[1].split()[0] for line in lines] == ["3/10", "6/10", "9/10", "10/10"]
    assert lines[-1].endswith("100 s")


def test_quiet_ranks_and_interval_zero_print_nothing():
    stream, clock = io.StringIO(), FakeClock()
    for progress in (
        Progress("test", 4, enabled=False, stream=stream, clock=clock),
        Progress("test", 4, interval_s=0, stream=stream, clock=clock),
    ):
        for done in range(1, 5):
            clock.now += 100.0
            progress.update(done)
    assert stream.getvalue() == ""
