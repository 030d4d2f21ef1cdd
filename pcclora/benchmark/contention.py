"""Busy-loop processes that occupy CPU cores while a section measures (``--contention N``).

Each process spins one core in pure Python (no threads, no torch) until it is stopped or its
time bound runs out, whichever comes first: a stand-in for the other programs of a shared
machine. :func:`busy_processes` waits until every process spins before it yields and stops them
all when the block ends, also on an error or an interrupt.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

#: The busy loop: report that it runs, then spin until the time bound (argv[1], seconds).
BUSY_LOOP = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "print('spinning', flush=True)\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


@contextlib.contextmanager
def busy_processes(count: int, max_seconds: float = 900.0) -> Iterator[list[int]]:
    """Run ``count`` busy-loop processes (one core each) during the block; yields their pids.

    Args:
        count: processes to start (0: none, the block runs on a quiet machine).
        max_seconds: each process ends by itself after this long, should it outlive the block.
    """
    processes: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-I", "-c", BUSY_LOOP, str(max_seconds)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for process in processes:
            process.stdout.readline()  # "spinning": the process is past its start-up
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()
