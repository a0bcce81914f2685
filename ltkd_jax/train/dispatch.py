"""How far the host may run ahead of the devices: at most `MAX_IN_FLIGHT` programs of a loop queued at once.

Why: XLA's CPU client lets the host queue 32 executions per device; the next dispatch then blocks, and may block
on one of the client's worker threads (as many as cores). With several CPU devices in one process (one per core,
`use_every_cpu_core`), one device's share of an all-reduce holds the other worker thread while it waits for its
partner share, which can never get a thread: XLA aborts the process after 40 s ("Termination timeout for all
reduce ... only 1 of them arrived"). A loop that waits for the program `MAX_IN_FLIGHT` dispatches back never
reaches the limit, on any backend, and still keeps the devices busy (docs/benchmarks.md: the reproduction, the cost).
"""

from __future__ import annotations

import collections

import jax

# Well below XLA's 32 per device, so that a training loop, its evaluation and a checkpoint copy together stay below.
MAX_IN_FLIGHT = 4


class InFlight:
    """`add(outputs)` after each dispatch: returns once at most `depth` dispatches are unfinished. `outputs` must
    outlive their dispatch (metrics, counts: never a donated state)."""

    def __init__(self, depth: int = MAX_IN_FLIGHT):
        self.depth, self._pending = depth, collections.deque()

    def add(self, outputs):
        self._pending.append(outputs)
        while len(self._pending) > self.depth:
            jax.block_until_ready(self._pending.popleft())
        return outputs

    def wait(self) -> None:
        """Until every dispatch added is finished."""
        while self._pending:
            jax.block_until_ready(self._pending.popleft())
