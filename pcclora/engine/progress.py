"""Progress of a loop: a tqdm bar on a terminal, a line every few seconds anywhere else.

With output redirected (a log file, a cluster job) a bar prints nothing useful, so the loop
then prints ``<what>: 120/356 (34%)  loss 0.8731  41 s, about 80 s left`` every
``interval_s`` seconds instead, and at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
    """Reports ``update(done, total, **figures)`` calls of one loop.

    Args:
        description: what the loop is (``"epoch 3"``, ``"test"``).
        total: steps of the loop.
        enabled: False on processes that must stay quiet (DDP ranks other than 0).
        interval_s: seconds between lines when the stream is not a terminal; 0 = no lines.
        stream: where lines go (default: stdout); the bar goes to stderr when that is a terminal.
        clock: a time source (tests pass a fake one).
    """

    def __init__(
        self,
        description: str,
        total: int,
        enabled: bool = True,
        interval_s: float = 30.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.description = description
        self.total = total
        self.stream = stream or sys.stdout
        self.clock = clock
        self.started = clock()
        self.interval_s = interval_s
        self.enabled = enabled
        terminal = sys.stderr.isatty() if stream is None else False
        self._bar: Any = None
        if enabled and terminal:
            self._bar = tqdm(total=total, desc=description, leave=False, dynamic_ncols=True)
        self._next_line = self.started + interval_s

    def update(self, done: int, **figures: float) -> None:
        """``done`` steps of ``total`` are finished; ``figures`` (e.g. ``loss``) are shown with it."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            if figures:
                self._bar.set_postfix({key: f"{value:.4f}" for key, value in figures.items()})
            if done >= self.total:
                self._bar.close()
            return
        now = self.clock()
        if self.interval_s > 0 and (now >= self._next_line or (done >= self.total and now - self.started >= 1.0)):
            self._next_line = now + self.interval_s
            print(self.line(done, now, figures), file=self.stream, flush=True)

    def line(self, done: int, now: float, figures: dict[str, float]) -> str:
        """One progress line."""
        elapsed = now - self.started
        share = 100.0 * done / max(self.total, 1)
        text = f"{self.description}: {done}/{self.total} ({share:.0f}%)"
        text += "".join(f"  {key} {value:.4f}" for key, value in figures.items())
        text += f"  {elapsed:.0f} s"
        if 0 < done < self.total:
            text += f", about {elapsed * (self.total - done) / done:.0f} s left"
        return text
