"""trajectory_msgs_io: ``trajectory_message`` with and without velocities / accelerations, read back
by ``trajectory_arrays``; the module loads no torch; the relay: the annotation runs in the relay's
own thread on the pipeline as it was frozen at arrival, results are published in arrival order,
and close / overflow / failures are counted, never silent. (The conversion in the node, over DDS:
test_node_trajectory.)"""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_trajectory_feedforward import NAMES, make_pipeline, motion, weights  # noqa: F401

pytest.importorskip('rclpy')
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from invdyn_ros.pipeline.trajectory_feedforward import annotate_trajectory  # noqa: E402
from invdyn_ros.ros.trajectory_msgs_io import (TrajectoryRelay, trajectory_arrays,  # noqa: E402
                                               trajectory_message)

TIMES = np.linspace(0.0, 2.0, 41)


def message(frame: str) -> JointTrajectory:
    q, qd, qdd, _ = motion(TIMES)
    msg = trajectory_message(NAMES, TIMES, q, qd, qdd, 0)
    msg.header.frame_id = frame
    return msg


def efforts(msg) -> np.ndarray:
    return np.array([list(p.effort) for p in msg.points])


def test_trajectory_message_reads_back_with_and_without_velocities_and_accelerations():
    q, qd, qdd, _ = motion(TIMES)
    msg = trajectory_message(NAMES, TIMES, q, qd, qdd, 7_000_000_001)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (7, 1)
    full = trajectory_arrays(msg)
    np.testing.assert_allclose(full['times'], TIMES, atol=1e-9)
    for key, want in (('positions', q), ('velocities', qd), ('accelerations', qdd)):
        np.testing.assert_array_equal(full[key], want)
    # positions only (a planner that leaves the rest to the controller's spline): both fields
    # empty in every point, read back as None, as the node's annotation expects them
    msg = trajectory_message(NAMES, TIMES, q)
    assert all(len(p.velocities) == 0 and len(p.accelerations) == 0 and len(p.effort) == 0
               for p in msg.points)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0)
    only = trajectory_arrays(msg)
    assert only['velocities'] is None and only['accelerations'] is None
    np.testing.assert_array_equal(only['positions'], q)
    np.testing.assert_array_equal(only['times'], full['times'])
    with_qd = trajectory_arrays(trajectory_message(NAMES, TIMES, q, qd))
    np.testing.assert_array_equal(with_qd['velocities'], qd)
    assert with_qd['accelerations'] is None


def test_the_module_loads_no_torch():
    """The demo's controller imports the module (``trajectory_arrays``) in a process without
    torch: the module, with its relay thread's ``normal_scheduling``, must not pull torch in."""
    code = ('import sys, invdyn_ros.ros.trajectory_msgs_io\n'
            'print(sorted(m for m in sys.modules if m.split(".")[0] == "torch"))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


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


def test_before_ready_nothing_is_copied_and_trajectories_are_still_checked(weights):  # noqa: F811
    """Before ready a trajectory only passes through: the freeze copies no networks, no
    identifier, no physics (about 1 ms of the control thread saved), and the checks still run,
    so a malformed trajectory is dropped rather than passed on."""
    from invdyn_ros.pipeline.frozen import FrozenPipeline

    pipe = make_pipeline(weights, ready=False)
    frozen = FrozenPipeline(pipe)
    assert not frozen.ready
    assert frozen.predictors == {} and frozen.identifier is None and frozen.physics is None
    out = Outbox()
    relay = TrajectoryRelay(pipe, publish=out)
    bad = message('bad')
    bad.points[3].positions[0] = float('nan')
    relay.submit(bad)
    relay.submit(message('good'))
    out.wait(1)
    assert [m.header.frame_id for m in out.got] == ['good']
    assert all(len(p.effort) == 0 for p in out.got[0].points)
    assert relay.counters['trajectories_rejected'] == 1
    assert relay.counters['trajectories_passed_through'] == 1
    assert relay.close()
    pipe.close()


def test_points_are_inserted_into_the_message_with_the_originals_kept(weights):  # noqa: F811
    """``max_point_dt``: the published message holds the original point objects unchanged (their
    times to the nanosecond) and new points between them with the same fields (accelerations only
    where the plan had them), every point with its effort; counted in the diagnostics."""
    pipe = make_pipeline(weights)
    times = np.arange(0, 21) * 0.05
    q, qd, qdd, _ = motion(times)
    for acc in (qdd, None):
        msg = trajectory_message(NAMES, times, q, qd, acc, 0)
        originals = list(msg.points)
        before = [(p.time_from_start.sec, p.time_from_start.nanosec, list(p.positions))
                  for p in originals]
        relay = TrajectoryRelay(pipe, max_point_dt=0.02)
        out = relay.handle(msg)
        assert len(out.points) == 21 + 2 * 20
        assert relay.counters['trajectory_points_inserted'] == 40
        kept = [p for p in out.points if any(p is o for o in originals)]
        assert len(kept) == 21
        assert [(p.time_from_start.sec, p.time_from_start.nanosec, list(p.positions))
                for p in kept] == before
        arrays = trajectory_arrays(out)
        assert (np.diff(arrays['times']) > 0).all() and np.diff(arrays['times']).max() < 0.0201
        assert (arrays['accelerations'] is None) == (acc is None)
        assert arrays['efforts'].shape == (61, 2) and np.isfinite(arrays['efforts']).all()
        assert np.abs(arrays['efforts']).max() > 0.1
    pipe.close()
