"""invdyn_node as a managed (lifecycle) node over real DDS: started with ``autostart: false`` as a
subprocess, driven through its real ``~/change_state`` / ``~/get_state`` services from the test's
own rclpy context: unconfigured (nothing held) -> configure (trainer process up) -> activate (the
learned feedforward flows) -> deactivate (zeros on ~/feedforward, learning goes on) -> cleanup
(final checkpoint written, trainer process gone, topics released) -> configure again (resumed
from that checkpoint). ``autostart`` (the default) is what every other node test runs."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from test_node import (KUKA, LIMIT, Harness, call_service, log_of, start_node, stop_node,
                       stream_7dof, write_params)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402

PARAMS = {
    'joint_names': KUKA, 'torque_limits': [LIMIT] * 7, 'autostart': False,
    'model': 'mlp', 'second_model': 'mlp', 'hidden_size': 8, 'num_layers': 1, 'window': 3,
    'batch_size': 16, 'min_samples': 32, 'updates_per_sample': 0.25, 'buffer_capacity': 2000,
    'recent_capacity': 500, 'publish_period_s': 0.3, 'diagnostics_period_s': 0.3,
    # ready as soon as a few outputs were scored, whatever their error: this test is about
    # when the feedforward flows, not about learning
    'ready_nmse': 1e9, 'ready_window': 20, 'ready_min_samples': 20, 'dual_window': 20,
    'stale_timeout_s': 0.5, 'checkpoint_period_s': 0.0, 'poll_every': 20,
}


def trainers(pid: int) -> set[int]:
    """The pids of the trainer processes of the node ``pid``: its children started by
    multiprocessing's spawn (not its resource tracker, which stays once started)."""
    out: set[int] = set()
    for task in Path(f'/proc/{pid}/task').iterdir():
        try:
            kids = [int(c) for c in (task / 'children').read_text().split()]
        except OSError:
            continue
        for kid in kids:
            try:
                cmdline = Path(f'/proc/{kid}/cmdline').read_bytes()
            except OSError:
                continue
            if b'spawn_main' in cmdline:
                out.add(kid)
    return out


def wait_until(predicate, proc, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f'node exited:\n{log_of(proc)[-3000:]}'
        assert time.monotonic() < deadline, f'{what}:\n{log_of(proc)[-3000:]}'
        time.sleep(0.05)


class Lifecycle:
    """Clients of the node's lifecycle services on the harness's node.

    Fast DDS can lose an answer (see ``test_node.call_service``): ``~/get_state`` is asked again
    when no answer comes, and a transition whose answer does not come is judged by the state the
    node ends in, as ``ros2 lifecycle`` users would check it (sending a transition twice would run
    it twice)."""

    GOAL = {Transition.TRANSITION_CONFIGURE: 'inactive', Transition.TRANSITION_CLEANUP:
            'unconfigured', Transition.TRANSITION_ACTIVATE: 'active',
            Transition.TRANSITION_DEACTIVATE: 'inactive'}
    BUSY = {'configuring', 'cleaningup', 'activating', 'deactivating', 'shuttingdown',
            'errorprocessing'}

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.change = h.node.create_client(ChangeState, '/invdyn_node/change_state')
        self.get = h.node.create_client(GetState, '/invdyn_node/get_state')

    def state(self, proc) -> str:
        return call_service(self.get, GetState.Request(), proc).current_state.label

    def transition(self, transition_id: int, proc, timeout: float = 120.0,
                   answer_within: float = 10.0) -> bool:
        """True when the node made the transition: its answer, or, when none came within
        ``answer_within`` s, the node has reached the transition's goal state (waited for up to
        ``timeout``)."""
        request = ChangeState.Request(transition=Transition(id=transition_id))
        assert self.change.wait_for_service(timeout_sec=timeout), log_of(proc)[-3000:]
        answer = call_service(self.change, request, proc, timeout=answer_within,
                              resend_after=None, allow_no_answer=True)
        if answer is not None:
            return answer.success
        return self.settled_state(proc, timeout) == self.GOAL[transition_id]

    def settled_state(self, proc, timeout: float = 120.0) -> str:
        """The node's state once no transition is under way (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while (state := self.state(proc)) in self.BUSY and time.monotonic() < deadline:
            time.sleep(0.2)
        return state


def test_transitions_over_the_lifecycle_services(tmp_path):
    ckpt = tmp_path / 'ckpt' / 'kuka'
    pfile = write_params(tmp_path / 'params.yaml', dict(PARAMS, checkpoint_path=str(ckpt)))
    proc = start_node(['--ros-args', '--params-file', str(pfile)], tmp_path / 'node.log')
    h = Harness()
    life = Lifecycle(h)
    t, q, qd, tau, _ = stream_7dof(2000)
    sent = 0

    def send(count: int) -> None:
        nonlocal sent
        for i in range(sent, sent + count):
            h.send(t[i], KUKA, q[i], qd[i], tau[i])
            time.sleep(0.004)
        sent += count

    try:
        # ---- unconfigured: the lifecycle services only; no topics, no trainer
        assert life.state(proc) == 'unconfigured'
        assert h.node.count_publishers('/invdyn_node/feedforward') == 0
        assert h.node.count_subscribers('/joint_states') == 0
        assert trainers(proc.pid) == set()

        # ---- configure: parameters, checkpoint (none yet), trainer process, topics
        assert life.transition(Transition.TRANSITION_CONFIGURE, proc)
        assert life.state(proc) == 'inactive'
        assert len(trainers(proc.pid)) >= 1                   # the trainer process
        h.wait_for_node(proc)
        wait_until(lambda: h.node.count_publishers('/invdyn_node/feedforward') > 0, proc,
                   'no ~/feedforward publisher after configure')

        # ---- activate: the learned feedforward flows once ready
        assert life.transition(Transition.TRANSITION_ACTIVATE, proc)
        assert life.state(proc) == 'active'
        while not any(any(v != 0.0 for v in ff) for ff in h.ff):
            assert sent + 50 <= len(t), f'no non-zero feedforward:\n{log_of(proc)[-3000:]}'
            send(50)
        d = h.wait_diag(lambda d: d['lifecycle_active'] == 'True')
        assert int(d['feedforward_measured']) > 0

        # ---- deactivate: zeros on ~/feedforward, predictions and learning go on
        assert life.transition(Transition.TRANSITION_DEACTIVATE, proc)
        assert life.state(proc) == 'inactive'
        before = h.wait_diag(lambda d: d['lifecycle_active'] == 'False')
        n_ff, n_out = len(h.ff), len(h.outputs)
        send(200)
        wait_until(lambda: len(h.ff) >= n_ff + 50 and len(h.outputs) >= n_out + 50, proc,
                   'no feedforward / predictions while inactive')
        after = h.wait_diag(lambda d: int(d['outputs']) >= int(before['outputs']) + 50)
        # the node's own accounting: every feedforward since is a zero one
        assert after['feedforward_measured'] == before['feedforward_measured']
        assert after['feedforward_reference'] == before['feedforward_reference']
        assert int(after['feedforward_zero']) >= int(before['feedforward_zero']) + 50
        assert after['lifecycle_active'] == 'False' and after['ready'] == 'True'
        # ... and on the wire: one writer keeps its order, so the newest messages are zeros
        assert all(v == 0.0 for ff in h.ff[-40:] for v in ff)

        # ---- cleanup: final checkpoint, trainer joined, topics released
        assert not list(ckpt.parent.glob('kuka.manifest.json'))
        assert life.transition(Transition.TRANSITION_CLEANUP, proc)
        assert life.state(proc) == 'unconfigured'
        assert (ckpt.parent / 'kuka.manifest.json').is_file()
        assert 'final checkpoint written' in log_of(proc)
        assert trainers(proc.pid) == set()                    # the trainer is gone
        wait_until(lambda: h.node.count_publishers('/invdyn_node/feedforward') == 0, proc,
                   '~/feedforward still published after cleanup')
        assert h.node.count_subscribers('/joint_states') == 0

        # ---- configure again: resumed from the checkpoint cleanup wrote
        assert life.transition(Transition.TRANSITION_CONFIGURE, proc)
        assert 'resumed from checkpoint' in log_of(proc)
        assert len(trainers(proc.pid)) >= 1
        assert life.transition(Transition.TRANSITION_ACTIVATE, proc)
        assert life.state(proc) == 'active'
        # an impossible transition is refused, the node goes on
        assert not life.transition(Transition.TRANSITION_CONFIGURE, proc)
        assert life.state(proc) == 'active'
    finally:
        h.close()
        code = stop_node(proc)
    log = Path(proc.log_path).read_text()
    assert code == 0, log[-3000:]
    assert 'Traceback' not in log


def test_a_failed_configure_leaves_the_node_unconfigured_and_running(tmp_path):
    """A checkpoint that does not fit: configure fails (logged), nothing is held, the node keeps
    serving its lifecycle services (with autostart the same refusal exits with code 2)."""
    ckpt = tmp_path / 'ckpt' / 'kuka'
    ckpt.parent.mkdir()
    (ckpt.parent / 'kuka.manifest.json').write_text('{"not": "a manifest"}')
    pfile = write_params(tmp_path / 'params.yaml', dict(PARAMS, checkpoint_path=str(ckpt)))
    proc = start_node(['--ros-args', '--params-file', str(pfile)], tmp_path / 'node.log')
    h = Harness()
    life = Lifecycle(h)
    try:
        assert life.state(proc) == 'unconfigured'
        assert not life.transition(Transition.TRANSITION_CONFIGURE, proc)
        assert life.state(proc) == 'unconfigured'
        assert 'configure failed' in log_of(proc)
        assert trainers(proc.pid) == set()
        assert h.node.count_publishers('/invdyn_node/feedforward') == 0
        assert (ckpt.parent / 'kuka.manifest.json').read_text() == '{"not": "a manifest"}'
    finally:
        h.close()
        code = stop_node(proc)
    assert code == 0, Path(proc.log_path).read_text()[-3000:]



def test_configure_waits_for_the_robot_description_inside_the_service_call(tmp_path):
    """Configure runs inside the executor's ~/change_state callback: the wait for a
    robot_description published only after the request must neither block forever nor take the
    node from its executor (joint states are processed afterwards)."""
    from test_node import UR5, DescriptionPublisher

    from invdyn_ros.sim.arm import find_robot_urdf

    pytest.importorskip('pinocchio')
    params = {'joint_names': UR5, 'torque_limits': [150.0] * 3 + [28.0] * 3, 'autostart': False,
              'prior': 'rnea', 'identify': False, 'rate_hz': 100.0, 'window': 3,
              'hidden_size': 8, 'num_layers': 1, 'trainer': 'inline', 'stale_timeout_s': 1.0}
    pfile = write_params(tmp_path / 'p.yaml', params)
    proc = start_node(['--ros-args', '--params-file', str(pfile)], tmp_path / 'node.log')
    h = Harness()
    life = Lifecycle(h)
    desc = None
    try:
        assert life.state(proc) == 'unconfigured'
        assert life.change.wait_for_service(timeout_sec=120.0)
        future = life.change.call_async(ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
        wait_until(lambda: 'waiting for /robot_description' in log_of(proc) or future.done(),
                   proc, 'configure did not wait for the robot description')
        assert not future.done()
        desc = DescriptionPublisher(find_robot_urdf('ur5').read_text())
        wait_until(lambda: 'robot description received on /robot_description' in log_of(proc),
                   proc, 'the URDF did not arrive', 120.0)
        # configure's answer may be lost (see Lifecycle): the state the node ends in decides
        assert life.settled_state(proc) == 'inactive'
        assert not future.done() or future.result().success
        assert life.transition(Transition.TRANSITION_ACTIVATE, proc)
        h.wait_for_node(proc)
        q0 = np.array([0.2, -1.0, 1.2, -1.5, -1.4, 0.1])
        for i in range(200):
            h.send(100.0 + 0.01 * i, UR5, q0, np.zeros(6), np.zeros(6))
            time.sleep(0.005)
            if len(h.outputs) >= 20:
                break
        wait_until(lambda: len(h.outputs) >= 20, proc, 'no predictions after configure')
    finally:
        h.close()
        code = stop_node(proc)
        if desc is not None:
            desc.close()
    assert code == 0, Path(proc.log_path).read_text()[-3000:]


def test_destroy_node_leaves_nothing_in_the_graph():
    """rclpy's LifecycleNode keeps its state machine (lifecycle services, transition_event, the
    node itself) alive after destroy_node while the object lives: a later client would find a
    stale ~/get_state server. InvdynNode.destroy_node releases it."""
    import rclpy
    from rclpy.context import Context
    from test_node import _in_process_node

    a, b = Context(), Context()
    rclpy.init(context=a)
    rclpy.init(context=b)
    try:
        node = _in_process_node(a, node_name='invdyn_destroy_test', autostart=False)
        observer = rclpy.create_node('invdyn_destroy_observer', context=b)

        def ours() -> list[str]:
            return [name for name, _ in observer.get_service_names_and_types()
                    if name.startswith('/invdyn_destroy_test/')]

        deadline = time.monotonic() + 60.0
        while '/invdyn_destroy_test/get_state' not in ours():
            assert time.monotonic() < deadline, 'the node never appeared in the graph'
            time.sleep(0.05)
        node.destroy_node()                   # `node` stays referenced, as in a test's frame
        deadline = time.monotonic() + 60.0
        while ours():
            assert time.monotonic() < deadline, f'still in the graph: {ours()}'
            time.sleep(0.05)
        assert node is not None               # (still referenced here)
        observer.destroy_node()
    finally:
        rclpy.shutdown(context=a)
        rclpy.shutdown(context=b)
