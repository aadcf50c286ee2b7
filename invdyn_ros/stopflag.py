"""A stop request that signal handlers may set safely.

``threading.Event.set()`` takes a lock. A Python signal handler runs in the main thread between
two bytecodes -- possibly while that thread is already inside ``Event.set()`` (a second SIGTERM /
SIGINT arriving during the first handler) or inside ``Event.wait()`` -- and then blocks forever on
the lock its own thread holds: a process that ignores every further SIGTERM (seen: invdyn_node
under launch's SIGINT + SIGTERM, stuck until SIGKILL). :class:`StopFlag` is a plain attribute
instead: ``set()`` never blocks, ``is_set()`` is a read, ``wait(timeout)`` polls.
"""
from __future__ import annotations

import time

__all__ = ['StopFlag']


class StopFlag:
    """``set()`` / ``is_set()`` / ``wait(timeout)`` like ``threading.Event``, without locks.

    Safe to set from signal handlers (also nested ones) and from any thread; ``wait`` sleeps in
    slices of at most ``poll_s`` and returns early once the flag is set."""

    __slots__ = ('_set', 'poll_s')

    def __init__(self, poll_s: float = 0.005) -> None:
        self._set = False
        self.poll_s = float(poll_s)

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until the flag is set or ``timeout`` seconds passed; returns ``is_set()``."""
        if timeout is None:
            while not self._set:
                time.sleep(self.poll_s)
            return True
        deadline = time.monotonic() + max(0.0, timeout)
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0.0:
                break
            time.sleep(min(self.poll_s, left))
        return self._set
