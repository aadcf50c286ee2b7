"""trajectory_msgs_io's relay: the annotation runs in the relay's own thread on the pipeline as it
was frozen at arrival, results are published in arrival order, and close / overflow / failures are
counted, never silent. (The message conversion itself: test_node_trajectory, over DDS.)"""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from test_trajectory_feedforward import NAMES, make_pipeline, motion, weights  # noqa: F401

pytest.importorskip('rclpy')
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from invdyn_ros.pipeline.trajectory_feedforward import annotate_trajectory  # noqa: E402
from invdyn_ros.ros.trajectory_msgs_io import TrajectoryRelay, trajectory_message  # noqa: E402

TIMES = np.linspace(0.0, 2.0, 41)


def message(frame: str) -> JointTrajectory:
    q, qd, qdd, _ = motion(TIMES)
    msg = trajectory_message(NAMES, TIMES, q, qd, qdd, 0)
    msg.header.frame_id = frame
    return msg


def efforts(msg) -> np.ndarray:
    return np.array([list(p.effort) for p in msg.points])


class Outbox:
    """The relay's ``publish``: records (message, thread); ``hold`` blocks it until released."""

    def __init__(self):
        self.got, self.threads = [], []
        self.hold, self.entered = threading.Event(), threading.Event()
        self.hold.set()
        self.done = threading.Semaphore(0)

    def __call__(self, msg):
        self.entered.set()
        self.hold.wait(30)
        self.got.append(msg)
        self.threads.append(threading.get_ident())
        self.done.release()

    def wait(self, k):
        for _ in range(k):
            assert self.done.acquire(timeout=30), f'{len(self.got)} published, {k} expected'


def test_annotation_runs_in_the_relays_thread_on_the_pipeline_as_it_arrived(weights):  # noqa: F811
    pipe = make_pipeline(weights)
    q, qd, qdd, _ = motion(TIMES)
    want = annotate_trajectory(pipe, NAMES, TIMES, q, qd, qdd).efforts
    out = Outbox()
    relay = TrajectoryRelay(pipe, publish=out)
    out.hold.clear()
    relay.submit(message('a'))
    assert out.entered.wait(30)                 # 'a' is annotated, its publish held
    relay.submit(message('b'))                  # frozen now, annotated later
    with torch.no_grad():
        for p in pipe.predictors.values():
            for w in p.model.parameters():
                w.mul_(0.5)                     # the live pipeline changes meanwhile
    relay.submit(message('c'), annotate=False)  # passed on unchanged, after 'b'
    out.hold.set()
    out.wait(3)
    assert [m.header.frame_id for m in out.got] == ['a', 'b', 'c']
    assert threading.get_ident() not in out.threads
    np.testing.assert_allclose(efforts(out.got[0]), want, atol=1e-9)
    np.testing.assert_allclose(efforts(out.got[1]), want, atol=1e-9)
    assert all(len(p.effort) == 0 for p in out.got[2].points)
    assert relay.counters['trajectories_annotated'] == 2
    d = dict(relay.diagnostics())
    assert d['trajectory_annotation_ms'] > 0 and d['trajectory_freeze_ms'] > 0
    assert relay.close()
    pipe.close()


def test_close_drops_the_waiting_ones_and_overflow_drops_the_oldest(weights):  # noqa: F811
    pipe = make_pipeline(weights)
    out = Outbox()
    relay = TrajectoryRelay(pipe, publish=out, queue_size=2)
    out.hold.clear()
    relay.submit(message('a'))
    assert out.entered.wait(30)
    for frame in 'bcd':                          # 'b' is dropped for 'd'
        relay.submit(message(frame))
    assert relay.counters['trajectories_dropped'] == 1
    out.hold.set()
    out.wait(3)
    assert [m.header.frame_id for m in out.got] == ['a', 'c', 'd']
    out.hold.clear()
    out.entered.clear()
    relay.submit(message('e'))
    assert out.entered.wait(30)
    relay.submit(message('f'))
    closer = threading.Thread(target=relay.close)
    closer.start()
    out.hold.set()                               # 'e' finishes, 'f' never starts
    closer.join(30)
    assert not closer.is_alive()
    relay.submit(message('g'))                   # after close: ignored
    assert [m.header.frame_id for m in out.got] == ['a', 'c', 'd', 'e']
    assert relay.counters['trajectories_dropped'] == 2      # 'b' and 'f'
    pipe.close()


def test_a_failing_publish_is_counted_and_the_next_trajectory_still_goes_out(weights):  # noqa: F811
    pipe = make_pipeline(weights)
    out = Outbox()

    def publish(msg):
        if msg.header.frame_id == 'bad':
            raise RuntimeError('publisher gone')
        out(msg)

    relay = TrajectoryRelay(pipe, publish=publish)
    relay.submit(message('bad'))
    relay.submit(message('good'))
    out.wait(1)
    assert [m.header.frame_id for m in out.got] == ['good']
    assert relay.counters['trajectories_failed'] == 1
    assert 'publisher gone' in dict(relay.diagnostics())['trajectory_last_error']
    assert relay.close()
    pipe.close()
