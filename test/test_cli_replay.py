"""invdyn_replay: the replay plan (pure), and the node publishing to a real rclpy subscriber."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from invdyn_ros.cli.invdyn_replay import Restamper, main, replay, replay_schedule
from invdyn_ros.offline.bag import read_joint_states, write_joint_states
from invdyn_ros.offline.datasets import Recording, make_time_axis

REPO = Path(__file__).resolve().parents[1]
START_NS = 1_700_000_000_000_000_000


def small_bag(path: Path, n: int = 25, rate_hz: float = 100.0, storage: str = 'sqlite3') -> Recording:
    rng = np.random.default_rng(3)
    t, segs = make_time_axis([n], rate_hz)
    rec = Recording(name='small', joint_names=('a', 'b'), rate_hz=rate_hz, t=t,
                    q=rng.standard_normal((n, 2)), qd=rng.standard_normal((n, 2)), qdd=None,
                    tau=rng.standard_normal((n, 2)), segments=segs)
    write_joint_states(path, rec, storage=storage, start_time_ns=START_NS)
    return rec


# ---------------------------------------------------------------------- the plan (no ROS)
def test_schedule_scales_bag_time_by_rate_and_keeps_stamps(tmp_path):
    small_bag(tmp_path / 'bag', n=5)
    stream = read_joint_states(tmp_path / 'bag')
    plan = list(replay_schedule(stream, rate=2.0))
    np.testing.assert_allclose([p.due_s for p in plan], np.arange(5) * 0.01 / 2.0)
    assert [p.stamp_ns for p in plan] == [s.stamp_ns for s in stream]
    assert {p.pass_index for p in plan} == {0}


def test_loop_plan_keeps_time_and_stamps_increasing_continuously(tmp_path):
    small_bag(tmp_path / 'bag', n=4)
    plan = list(replay_schedule(read_joint_states(tmp_path / 'bag'), rate=1.0, loops=3,
                                shift_stamps=True))
    assert len(plan) == 12 and [p.pass_index for p in plan] == [0] * 4 + [1] * 4 + [2] * 4
    stamps = np.array([p.stamp_ns for p in plan])
    due = np.array([p.due_s for p in plan])
    # one sample period between the last message of a pass and the first of the next
    np.testing.assert_array_equal(np.diff(stamps), 10_000_000)
    np.testing.assert_allclose(np.diff(due), 0.01)
    # without shifting, each pass repeats the original stamps (what --restamp replaces)
    plain = [p.stamp_ns for p in replay_schedule(read_joint_states(tmp_path / 'bag'), loops=2)]
    assert plain[:4] == plain[4:]


def test_infinite_loop_plan_is_lazy(tmp_path):
    small_bag(tmp_path / 'bag', n=3)
    plan = replay_schedule(read_joint_states(tmp_path / 'bag'), loops=None, shift_stamps=True)
    items = [next(plan) for _ in range(10)]
    assert items[-1].pass_index == 3


def test_restamp_keeps_planned_spacing_even_when_sends_are_late(tmp_path):
    small_bag(tmp_path / 'bag', n=4)
    plan = list(replay_schedule(read_joint_states(tmp_path / 'bag'), rate=2.0))
    wall = iter([5_000_000_000, 5_123_000_000, 5_200_000_000, 5_999_000_000])  # jittery now()
    restamp = Restamper(lambda: next(wall))
    stamps = [restamp(item) for item in plan]
    assert stamps == [5_000_000_000 + k * 5_000_000 for k in range(4)]  # 10 ms / rate 2


def test_replay_sends_in_order_and_stops_on_event(tmp_path):
    small_bag(tmp_path / 'bag', n=5)
    stream = read_joint_states(tmp_path / 'bag')
    sent = []
    stats = replay(replay_schedule(stream, rate=10.0), sent.append, threading.Event())
    assert [p.sample.stamp_ns for p in sent] == [s.stamp_ns for s in stream]
    assert stats.published == 5 and stats.passes == 1 and not stats.interrupted

    stop = threading.Event()

    def publish(item):
        sent.append(item)
        if len(sent) == 8:
            stop.set()
    sent.clear()
    stats = replay(replay_schedule(stream, loops=None), publish, stop)
    assert stats.interrupted and stats.published == 8


def test_bad_bag_and_bad_options_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / 'missing')]) == 2
    assert 'no such bag' in capsys.readouterr().err
    small_bag(tmp_path / 'bag')
    assert main([str(tmp_path / 'bag'), '--topic', '/nope']) == 2
    assert '/joint_states' in capsys.readouterr().err  # lists the available topics
    assert main([str(tmp_path / 'bag'), '--rate', '0']) == 2
    assert main([str(tmp_path / 'bag'), '--loops', '0']) == 2


# ---------------------------------------------------------------------- real DDS
class Collector:
    """A subscriber node in its own context, spinning in a background thread."""

    def __init__(self, topic: str) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState

        # own context: independent of whatever other test modules did with the default one
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('replay_test_listener', context=self.context)
        self.received: list[tuple[int, list, list, list, list, float]] = []
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(JointState, topic, self._on_msg, qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_msg(self, msg) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.received.append((stamp, list(msg.name), list(msg.position), list(msg.velocity),
                              list(msg.effort), time.monotonic()))

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def collector():
    pytest.importorskip('rclpy')
    c = Collector('/replay_test/joint_states')
    yield c
    c.close()


@pytest.mark.ros
def test_replay_node_delivers_every_message_in_order_with_original_stamps(tmp_path, collector, capsys):
    rec = small_bag(tmp_path / 'bag', n=25, storage='mcap')
    code = main([str(tmp_path / 'bag'), '--remap-topic', '/replay_test/joint_states',
                 '--wait-for-subscribers', '1', '--rate', '2.0'])
    assert code == 0
    collector.wait_for(len(rec))
    got = collector.received
    assert len(got) == len(rec)
    expected = [s for s in read_joint_states(tmp_path / 'bag')]
    assert [g[0] for g in got] == [s.stamp_ns for s in expected]  # order and stamps
    for g, s in zip(got, expected):
        assert tuple(g[1]) == s.names
        assert g[2] == s.position.tolist() and g[3] == s.velocity.tolist() and g[4] == s.effort.tolist()
    # paced, not dumped: 24 intervals of 10 ms at x2 take >= 120 ms (only a lower bound is safe)
    assert got[-1][5] - got[0][5] > 0.5 * 24 * 0.01 / 2.0
    assert 'published 25 messages in 1 pass' in capsys.readouterr().out


@pytest.mark.ros
def test_loop_keeps_stamps_increasing_and_restamp_uses_now(tmp_path, collector):
    small_bag(tmp_path / 'bag', n=5)
    assert main([str(tmp_path / 'bag'), '--remap-topic', '/replay_test/joint_states',
                 '--wait-for-subscribers', '1', '--loops', '3', '--rate', '5']) == 0
    collector.wait_for(15)
    stamps = [g[0] for g in collector.received]
    assert len(stamps) == 15 and all(b - a == 10_000_000 for a, b in zip(stamps, stamps[1:]))

    collector.received.clear()
    before = time.time_ns()
    assert main([str(tmp_path / 'bag'), '--remap-topic', '/replay_test/joint_states',
                 '--wait-for-subscribers', '1', '--restamp', '--rate', '5']) == 0
    collector.wait_for(5)
    stamps = [g[0] for g in collector.received]
    assert len(stamps) == 5 and all(s >= before for s in stamps) and stamps == sorted(stamps)


@pytest.mark.ros
def test_ctrl_c_exits_cleanly_with_status_0(tmp_path):
    small_bag(tmp_path / 'bag', n=50)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED='1')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'invdyn_ros.cli.invdyn_replay', str(tmp_path / 'bag'), '--loop',
         '--remap-topic', '/replay_test/sigint'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()  # the start banner: the replay loop is running
        assert 'invdyn_replay' in first and 'keep increasing' in first
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert 'Traceback' not in err
    assert 'interrupted' in out
