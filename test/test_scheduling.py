"""scheduling.normal_scheduling: a helper thread of a SCHED_FIFO control thread drops back to
normal scheduling; where it already runs normally, or the OS refuses or lacks the call, nothing
happens and nothing is raised."""
from __future__ import annotations

import os
import threading

import pytest

from invdyn_ros.pipeline.scheduling import normal_scheduling


def test_a_thread_that_inherited_sched_fifo_drops_back_to_normal():
    seen = {}

    def helper():
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))   # as if inherited
        except (AttributeError, OSError) as exc:
            seen['refused'] = repr(exc)
            return
        normal_scheduling()
        seen['policy'] = os.sched_getscheduler(0)

    th = threading.Thread(target=helper)
    th.start()
    th.join()
    if 'refused' in seen:
        pytest.skip(f'SCHED_FIFO not permitted here: {seen["refused"]}')
    assert seen['policy'] == os.SCHED_OTHER


def test_already_normal_is_left_alone(monkeypatch):
    def unexpected(*args):
        raise AssertionError('sched_setscheduler called for a thread that is already normal')
    monkeypatch.setattr(os, 'sched_getscheduler', lambda pid: os.SCHED_OTHER)
    monkeypatch.setattr(os, 'sched_setscheduler', unexpected)
    normal_scheduling()


def test_a_refusal_or_a_missing_call_is_quietly_skipped(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, 'Operation not permitted')
    monkeypatch.setattr(os, 'sched_getscheduler', lambda pid: os.SCHED_FIFO)
    monkeypatch.setattr(os, 'sched_setscheduler', refuse)
    normal_scheduling()
    monkeypatch.delattr(os, 'sched_getscheduler')             # not Linux
    normal_scheduling()
