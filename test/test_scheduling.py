"""scheduling: a helper thread of a SCHED_FIFO control thread drops back to normal scheduling
(where it already runs normally, or the OS refuses or lacks the call, nothing happens and nothing
is raised); SCHED_FIFO for the control thread and for the middleware's receive threads."""
from __future__ import annotations

import os
import threading

import pytest
from conftest import RecordingLog as Log

from invdyn_ros.pipeline.scheduling import (RECEIVE_THREAD_PATTERN, normal_scheduling,
                                          raise_receive_threads, realtime_priority,
                                          receive_threads)


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


def test_realtime_priority_zero_is_normal_and_a_refusal_is_a_warning(monkeypatch):
    log = Log()
    assert realtime_priority(0, log) == (False, 'normal') and log.lines == []

    def refuse(*args):
        raise PermissionError(1, 'Operation not permitted')

    monkeypatch.setattr(os, 'sched_setscheduler', refuse)
    assert realtime_priority(50, log) == (False, 'normal (SCHED_FIFO 50 refused)')
    ((level, text),) = log.lines
    assert level == 'warning' and 'SCHED_FIFO refused' in text and 'rtprio' in text


def test_receive_threads_are_found_by_name(tmp_path):
    """Fast DDS's transport receive threads and Cyclone's, not the other middleware threads."""
    names = {101: 'python', 102: 'dds.shm.7001', 103: 'dds.udp.29913', 104: 'dds.shm.wdog',
             105: 'dds.ev.0', 106: 'dds.asyn.0.1', 107: 'recvUC', 108: 'recv', 109: 'recvMC',
             110: 'dds.tcp.5100', 111: 'receiver'}
    for tid, name in names.items():
        (tmp_path / str(tid)).mkdir()
        (tmp_path / str(tid) / 'comm').write_text(name + '\n')
    (tmp_path / '112').mkdir()                       # a thread that ended: no comm any more
    assert receive_threads(str(tmp_path)) == {102: 'dds.shm.7001', 103: 'dds.udp.29913',
                                              107: 'recvUC', 108: 'recv', 109: 'recvMC',
                                              110: 'dds.tcp.5100'}
    assert receive_threads(str(tmp_path / 'missing')) == {}
    assert not RECEIVE_THREAD_PATTERN.fullmatch('dds.shm.wdog')


def _restore_normal(tids):
    for tid in tids:
        try:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            pass


def test_the_receive_threads_of_a_real_rclpy_context_are_raised_or_a_warning():
    """With rclpy's middleware (Fast DDS here) the receive threads exist once a node does; each
    is put under SCHED_FIFO, or, where that is refused, a warning says so. Both outcomes are
    checked: this machine may or may not grant it. The threads are set back afterwards."""
    rclpy = pytest.importorskip('rclpy')
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('scheduling_probe', context=ctx)
    threads = receive_threads()
    try:
        assert threads, 'no middleware receive thread found by name'
        log = Log()
        raised = raise_receive_threads(7, log)
        if raised:
            assert sorted(raised) == sorted(threads.values())
            for tid in threads:
                assert os.sched_getscheduler(tid) == os.SCHED_FIFO
                assert os.sched_getparam(tid).sched_priority == 7
            assert log.lines[-1][0] == 'info' and 'SCHED_FIFO 7' in log.lines[-1][1]
        else:
            assert log.lines[0][0] == 'warning' and 'refused' in log.lines[0][1]
    finally:
        _restore_normal(threads)
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_raising_receive_threads_refused_or_none_found(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, 'Operation not permitted')

    log = Log()
    monkeypatch.setattr('invdyn_ros.pipeline.scheduling.receive_threads',
                        lambda: {5: 'dds.udp.7400'})
    monkeypatch.setattr(os, 'sched_setscheduler', refuse)
    assert raise_receive_threads(50, log) == []
    ((level, text),) = log.lines
    assert level == 'warning' and 'dds.udp.7400' in text and 'normal scheduling' in text
    monkeypatch.setattr('invdyn_ros.pipeline.scheduling.receive_threads', lambda: {})
    assert raise_receive_threads(50, log) == [] and log.lines[-1][0] == 'info'
