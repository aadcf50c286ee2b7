"""StopFlag: Event-like, lock-free, so signal handlers can set it even when they nest."""
from __future__ import annotations

import os
import signal
import threading
import time

from invdyn_ros.stopflag import StopFlag


def test_set_is_set_and_wait_like_an_event():
    flag = StopFlag()
    assert not flag.is_set()
    t0 = time.monotonic()
    assert flag.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.05
    threading.Timer(0.05, flag.set).start()       # another thread ends a long wait early
    t0 = time.monotonic()
    assert flag.wait(10.0) is True
    assert time.monotonic() - t0 < 5.0
    assert flag.is_set() and flag.wait(0.0) and flag.wait()


def test_nested_signal_handlers_setting_the_flag_do_not_block():
    """The handler raises the same signal again while it runs: Python runs the nested handler
    inside the first one. Both set the flag; nothing may block (an Event could deadlock here)."""
    flag = StopFlag()
    depth = {'now': 0, 'max': 0, 'calls': 0}

    def handler(signum, frame):
        depth['now'] += 1
        depth['calls'] += 1
        depth['max'] = max(depth['max'], depth['now'])
        if depth['calls'] < 5:
            os.kill(os.getpid(), signal.SIGUSR1)     # delivered before this handler returns
            for _ in range(1000):                    # bytecodes: the nested handler runs here
                flag.set()
        depth['now'] -= 1

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(1000):
            pass
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert depth['calls'] == 5 and depth['max'] >= 2 and flag.is_set()
