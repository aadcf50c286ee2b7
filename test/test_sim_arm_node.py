"""sim_arm and torque_controller nodes with real rclpy (DDS on loopback, see conftest.py).

The nodes run in-process in one executor spinning in a background thread; a probe node plays the
other side (subscriber / publisher). Topics are per-test so nothing leaks between tests.
"""
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('pinocchio')

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64, Float64MultiArray, String  # noqa: E402
from trajectory_msgs.msg import JointTrajectoryPoint  # noqa: E402

from invdyn_ros.sim.arm import UR_HOME, ArmConfig, SimulatedArm  # noqa: E402
from invdyn_ros.sim.controller_node import TorqueControllerNode  # noqa: E402
from invdyn_ros.sim.sim_arm_node import SimArmNode  # noqa: E402

pytestmark = pytest.mark.ros

UR5_NAMES = ['shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint',
             'wrist_1_joint', 'wrist_2_joint', 'wrist_3_joint']


class Ros:
    """One context + executor spinning in a thread; nodes are added with ``add``."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes = []
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shutdown races end the thread quietly
            pass

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def wait_for(self, condition, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.01)
        return condition()

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        for node in self.nodes:
            node.destroy_node()
        rclpy.shutdown(context=self.context)
        self.thread.join(timeout=2.0)


@pytest.fixture
def ros():
    r = Ros()
    yield r
    r.close()


class Probe:
    """Collects joint states and publishes commands / payloads."""

    def __init__(self, ros, prefix):
        self.node = ros.add(rclpy.create_node('probe', context=ros.context))
        self.states = []
        self.lock = threading.Lock()
        self.node.create_subscription(JointState, f'{prefix}/joint_states', self._on_state, 100)
        self.command = self.node.create_publisher(Float64MultiArray, f'{prefix}/commands', 10)
        self.payload = self.node.create_publisher(Float64, '/sim_arm/payload_kg', 10)

    def _on_state(self, msg):
        with self.lock:
            self.states.append(msg)

    def snapshot(self):
        with self.lock:
            return list(self.states)

    def send(self, values):
        self.command.publish(Float64MultiArray(data=[float(v) for v in values]))

    def wait_connected(self, ros, sim):
        assert ros.wait_for(lambda: self.command.get_subscription_count() > 0 and
                            len(self.snapshot()) > 0)


def sim_node(ros, prefix, **params):
    overrides = dict(joint_states_topic=f'{prefix}/joint_states',
                     command_topic=f'{prefix}/commands',
                     position_noise_std=0.0, velocity_noise_std=0.0, effort_noise_std=0.0)
    overrides.update(params)
    return ros.add(SimArmNode(context=ros.context, parameter_overrides=[
        Parameter(k, value=v) for k, v in overrides.items()]))


def stamp_ns(msg):
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_publishes_joint_states_with_names_and_rate(ros):
    sim = sim_node(ros, '/t1')
    probe = Probe(ros, '/t1')
    assert ros.wait_for(lambda: len(probe.snapshot()) >= 150)
    states = probe.snapshot()
    assert all(list(m.name) == UR5_NAMES for m in states)
    # Stamps are simulated time at exactly 500 Hz: consecutive messages are 2 ms apart.
    steps = np.diff([stamp_ns(m) for m in states])
    assert np.all(steps == 2_000_000), np.unique(steps)
    assert sim.rate_hz == 500.0
    # Before any command the brakes hold the arm at home; effort is the holding (gravity) torque.
    last = states[-1]
    np.testing.assert_allclose(last.position, UR_HOME, atol=1e-12)
    np.testing.assert_allclose(last.velocity, 0.0, atol=1e-12)
    gravity = SimulatedArm(ArmConfig()).gravity(np.array(UR_HOME))
    np.testing.assert_allclose(last.effort, gravity, atol=1e-9)
    assert abs(gravity[1]) > 10.0


def test_bad_commands_are_rejected_and_states_stay_finite(ros):
    sim = sim_node(ros, '/t2', command_timeout_s=100.0)
    probe = Probe(ros, '/t2')
    probe.wait_connected(ros, sim)
    good = np.array([1.0, -2.0, 3.0, 0.5, -0.5, 0.25])
    probe.send(good)
    assert ros.wait_for(lambda: sim.counters['commands_accepted'] == 1)
    probe.send(good[:5])                                   # wrong length
    probe.send([0.0, 0.0, float('nan'), 0.0, 0.0, 0.0])    # NaN
    probe.send([float('inf')] * 6)                          # Inf
    assert ros.wait_for(lambda: sim.counters['rejected_length'] == 1 and
                        sim.counters['rejected_nonfinite'] == 2)
    n_before = len(probe.snapshot())
    assert ros.wait_for(lambda: len(probe.snapshot()) > n_before + 50)
    later = probe.snapshot()[n_before:]
    for msg in later:
        assert np.all(np.isfinite(msg.position)) and np.all(np.isfinite(msg.velocity))
        np.testing.assert_allclose(msg.effort, good)        # the last valid command is held
    assert sim.counters['commands_accepted'] == 1


def test_command_timeout_zeroes_the_torque(ros):
    sim = sim_node(ros, '/t3', command_timeout_s=0.1)
    probe = Probe(ros, '/t3')
    probe.wait_connected(ros, sim)
    probe.send(np.full(6, 0.5))
    assert ros.wait_for(lambda: sim.counters['timeouts'] == 1)
    n_before = len(probe.snapshot())
    assert ros.wait_for(lambda: len(probe.snapshot()) > n_before + 10)
    for msg in probe.snapshot()[n_before + 1:]:
        np.testing.assert_array_equal(msg.effort, 0.0)
        assert np.all(np.isfinite(msg.position))
    # The arm is now falling under gravity (no brakes with on_timeout='zero').
    assert ros.wait_for(lambda: abs(probe.snapshot()[-1].velocity[1]) > 0.05)


def test_payload_topic_changes_the_arm_at_runtime(ros):
    sim = sim_node(ros, '/t4')
    probe = Probe(ros, '/t4')
    probe.wait_connected(ros, sim)
    assert ros.wait_for(lambda: probe.payload.get_subscription_count() > 0)
    probe.payload.publish(Float64(data=2.5))
    assert ros.wait_for(lambda: sim.arm.payload_kg == 2.5)
    probe.payload.publish(Float64(data=-1.0))
    probe.payload.publish(Float64(data=float('nan')))
    assert ros.wait_for(lambda: sim.counters['rejected_payload'] == 2)
    assert sim.arm.payload_kg == 2.5
    result = sim.set_parameters([Parameter('payload_kg', value=1.0)])[0]
    assert result.successful and sim.arm.payload_kg == 1.0
    assert not sim.set_parameters([Parameter('payload_kg', value=-3.0)])[0].successful
    assert not sim.set_parameters([Parameter('rate_hz', value=100.0)])[0].successful


# --------------------------------------------------------------------------------------------
class FakeInvdyn:
    """Stands in for invdyn_node: answers each reference with a feedforward (the true model's
    inverse dynamics -- a perfectly learned network -- or NaN when told to misbehave)."""

    def __init__(self, ros):
        self.node = ros.add(rclpy.create_node('fake_invdyn', context=ros.context))
        self.model = SimulatedArm(ArmConfig())
        self.nan = False
        self.references = []
        self.pub = self.node.create_publisher(Float64MultiArray, '/invdyn_node/feedforward', 10)
        self.node.create_subscription(JointTrajectoryPoint, '/invdyn_node/reference',
                                      self._on_reference, 10)

    def _on_reference(self, msg):
        self.references.append(msg)
        if self.nan:
            tau = [float('nan')] * 6
        else:
            tau = self.model.rnea(msg.positions, msg.velocities, msg.accelerations).tolist()
        self.pub.publish(Float64MultiArray(data=tau))


def closed_loop(ros, mode):
    sim = sim_node(ros, '/t5', position_noise_std=1e-4, velocity_noise_std=2e-3)
    ctrl = ros.add(TorqueControllerNode(context=ros.context, parameter_overrides=[
        Parameter('joint_states_topic', value='/t5/joint_states'),
        Parameter('command_topic', value='/t5/commands'),
        Parameter('mode', value=mode)]))
    return sim, ctrl


def rms_error_over(ros, ctrl, steps, settle=0):
    """RMS tracking error sampled while the controller runs ``steps`` control steps, after
    ``settle`` steps. Counted in control steps (simulated time), not wall time, so a loaded
    machine that runs the simulation slower than real time measures the same thing."""
    start = ctrl.counters['steps']
    assert ros.wait_for(lambda: ctrl.counters['steps'] >= start + settle, timeout=60.0)
    start = ctrl.counters['steps']
    errors = []
    deadline = time.monotonic() + 60.0
    while ctrl.counters['steps'] < start + steps and time.monotonic() < deadline:
        errors.append(np.abs(ctrl.last_error))
        time.sleep(0.005)
    assert ctrl.counters['steps'] >= start + steps
    return np.sqrt(np.mean(np.square(errors), axis=0))


def test_closed_loop_learned_feedforward_tracks_like_ideal(ros):
    fake = FakeInvdyn(ros)
    sim, ctrl = closed_loop(ros, 'learned')
    learned = rms_error_over(ros, ctrl, 500, settle=300)
    # References: one step ahead, full (q, qd, qdd), finite.
    ref = fake.references[-1]
    assert len(ref.positions) == len(ref.velocities) == len(ref.accelerations) == 6
    assert np.all(np.isfinite(ref.positions))
    # With a perfect (true-model) feedforward the error is tiny; PD alone lags visibly.
    mode_pub = fake.node.create_publisher(String, '/torque_controller/mode', 10)
    assert ros.wait_for(lambda: mode_pub.get_subscription_count() > 0)
    mode_pub.publish(String(data='pd'))
    assert ros.wait_for(lambda: ctrl.mode == 'pd')
    pd = rms_error_over(ros, ctrl, 500, settle=500)
    assert np.max(learned) < 0.01, learned
    assert np.max(pd) > 3 * np.max(learned), (pd, learned)
    mode_pub.publish(String(data='bogus'))
    assert ros.wait_for(lambda: ctrl.counters['rejected_mode'] == 1)
    assert ctrl.mode == 'pd'


def test_closed_loop_ideal_mode_and_nan_feedforward_is_ignored(ros):
    fake = FakeInvdyn(ros)
    fake.nan = True
    sim, ctrl = closed_loop(ros, 'learned')
    assert ros.wait_for(lambda: ctrl.counters['rejected_feedforward'] > 20)
    # NaN feedforward never reaches the arm: it runs on PD and all commands are finite.
    assert sim.counters['rejected_nonfinite'] == 0
    assert sim.counters['commands_accepted'] > 20
    result = ctrl.set_parameters([Parameter('mode', value='ideal')])[0]
    assert result.successful and ctrl.effective_mode == 'ideal'
    ideal = rms_error_over(ros, ctrl, 500, settle=1000)  # 2 s (sim) for the PD transient
    assert np.max(ideal) < 0.01, ideal
    q, qd = sim.arm.true_state()
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(qd))


def test_brake_on_timeout_holds_the_arm(ros):
    sim = sim_node(ros, '/t6', command_timeout_s=0.05, on_timeout='brake')
    probe = Probe(ros, '/t6')
    probe.wait_connected(ros, sim)
    probe.send(np.zeros(6))  # releases the brakes; zero torque -> the arm starts to fall
    assert ros.wait_for(lambda: sim.counters['timeouts'] == 1)
    held = sim.arm.true_state()[0]
    n_before = len(probe.snapshot())
    assert ros.wait_for(lambda: len(probe.snapshot()) > n_before + 20)
    np.testing.assert_allclose(sim.arm.true_state()[0], held)
    np.testing.assert_array_equal(probe.snapshot()[-1].velocity, 0.0)


def test_controller_ignores_unusable_joint_states(ros):
    ctrl = ros.add(TorqueControllerNode(context=ros.context, parameter_overrides=[
        Parameter('joint_states_topic', value='/t7/joint_states'),
        Parameter('command_topic', value='/t7/commands'), Parameter('mode', value='pd')]))
    good = JointState(name=list(reversed(UR5_NAMES)), position=list(reversed(UR_HOME)),
                      velocity=[0.0] * 6)
    good.header.stamp.sec = 1
    ctrl._on_joint_states(good)  # reordered by name: starts at home, no error
    assert ctrl.counters['steps'] == 1
    np.testing.assert_allclose(ctrl.last_error, 0.0, atol=1e-12)
    missing = JointState(name=UR5_NAMES[:5], position=[0.0] * 5, velocity=[0.0] * 5)
    nan = JointState(name=UR5_NAMES, position=[float('nan')] + [0.0] * 5, velocity=[0.0] * 6)
    no_velocity = JointState(name=UR5_NAMES, position=[0.0] * 6)
    for msg in (missing, nan, no_velocity):
        msg.header.stamp.sec = 2
        ctrl._on_joint_states(msg)
    assert ctrl.counters['rejected_states'] == 3 and ctrl.counters['steps'] == 1
    assert not ctrl.set_parameters([Parameter('mode', value='turbo')])[0].successful
    assert ctrl.set_parameters([Parameter('use_feedforward', value=False)])[0].successful
    assert ctrl.effective_mode == 'pd'


def test_step_observers_report_every_step_with_its_stamp(ros):
    """The public hooks invdyn_demo records through: every published tick (stamp + applied
    torque), every control step (stamp, mode, reference, error, feedforward used, command) and
    every valid feedforward message, in order and with the stamps of the joint states."""
    fake = FakeInvdyn(ros)
    sim, ctrl = closed_loop(ros, 'learned')
    ticks, steps, ffs = [], [], []
    sim.add_step_observer(lambda stamp_ns, tau: ticks.append((stamp_ns, tau)))
    ctrl.add_step_observer(steps.append)
    ctrl.add_feedforward_observer(ffs.append)
    assert ros.wait_for(lambda: len(steps) > 300 and len(ffs) > 100, timeout=60.0)
    tick_stamps = [s for s, _ in ticks]
    assert np.all(np.diff(tick_stamps) > 0)
    assert all(tau.shape == (6,) and np.isfinite(tau).all() for _, tau in ticks)
    late = [st for st in steps if st.stamp_ns >= tick_stamps[0]]
    assert len(late) > 250 and {st.stamp_ns for st in late} <= set(tick_stamps)
    assert np.all(np.diff([st.stamp_ns for st in steps]) > 0)
    limits = ctrl.controller.torque_limits
    for st in late:
        assert st.mode == 'learned' and st.error.shape == (6,) and np.isfinite(st.error).all()
        assert len(st.reference) == 3 and np.isfinite(st.command).all()
        assert np.all(np.abs(st.command) <= limits + 1e-9)
    used = [st.feedforward for st in late if st.feedforward is not None]
    assert len(used) > 0.9 * len(late)
    # what the controller added is exactly a feedforward message it received (the newest)
    assert all(any(np.array_equal(u, f) for f in ffs) for u in used[-50:])
    del fake


def _control_step(ctrl, steps, stamp_s):
    """One control step of ``ctrl`` at the home pose, stamped ``stamp_s``: its observed step."""
    js = JointState(name=UR5_NAMES, position=list(UR_HOME), velocity=[0.0] * 6)
    js.header.stamp.sec, js.header.stamp.nanosec = divmod(int(round(stamp_s * 1e9)),
                                                          1_000_000_000)
    ctrl._on_joint_states(js)
    return steps[-1]


def _trajectory(names, stamp_s, times, efforts=None):
    from trajectory_msgs.msg import JointTrajectory
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(round(stamp_s * 1e9)),
                                                            1_000_000_000)
    for k, t in enumerate(times):
        p = JointTrajectoryPoint(positions=list(UR_HOME), velocities=[0.0] * 6)
        if efforts is not None:
            p.effort = [float(x) for x in efforts[k]]
        p.time_from_start.sec, p.time_from_start.nanosec = divmod(int(round(t * 1e9)),
                                                                  1_000_000_000)
        msg.points.append(p)
    return msg


def test_learned_feedforward_is_taken_best_effort_and_reuse_is_counted(ros):
    """A step that applies the feedforward an earlier step applied already counts as
    ``repeated_feedforward``; the feedforward subscription is best effort (so a lost sample
    never holds back the newer ones): a best-effort publisher, which a reliable subscription
    would refuse, reaches it."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    ctrl = ros.add(TorqueControllerNode(context=ros.context, parameter_overrides=[
        Parameter('joint_states_topic', value='/t9/joint_states'),
        Parameter('command_topic', value='/t9/commands'),
        Parameter('feedforward_topic', value='/t9/feedforward'),
        Parameter('feedforward_timeout_s', value=30.0),     # wall clock: not under test here
        Parameter('mode', value='learned')]))
    steps, ffs = [], []
    ctrl.add_step_observer(steps.append)
    ctrl.add_feedforward_observer(ffs.append)

    def step(stamp_s):
        return _control_step(ctrl, steps, stamp_s)

    first = np.arange(1.0, 7.0)
    ctrl._on_feedforward(Float64MultiArray(data=first.tolist()))
    np.testing.assert_allclose(step(1.0).feedforward, first)
    assert ctrl.counters['repeated_feedforward'] == 0
    np.testing.assert_allclose(step(1.002).feedforward, first)
    np.testing.assert_allclose(step(1.004).feedforward, first)
    assert ctrl.counters['repeated_feedforward'] == 2
    ctrl._on_feedforward(Float64MultiArray(data=(2 * first).tolist()))
    np.testing.assert_allclose(step(1.006).feedforward, 2 * first)
    assert ctrl.counters['repeated_feedforward'] == 2 and ctrl.counters['stale_feedforward'] == 0

    node = ros.add(rclpy.create_node('ff_probe', context=ros.context))
    pub = node.create_publisher(Float64MultiArray, '/t9/feedforward',
                                QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    assert ros.wait_for(lambda: pub.get_subscription_count() == 1)   # QoS compatible: matched
    third = 3 * first
    assert ros.wait_for(lambda: (pub.publish(Float64MultiArray(data=third.tolist())),
                                 any(np.array_equal(f, third) for f in ffs))[1])
    np.testing.assert_allclose(step(1.008).feedforward, third)


def test_trajectory_mode_adds_the_interpolated_point_efforts(ros):
    """Mode 'trajectory' (JTC-like): the point efforts of the newest annotated trajectory,
    joints by name, times = header.stamp + time_from_start on the joint-state clock, linearly
    interpolated; none (counted) outside the points' span or when the points carry no effort;
    a trajectory missing a joint is ignored (counted) and the previous one stays."""
    ctrl = ros.add(TorqueControllerNode(context=ros.context, parameter_overrides=[
        Parameter('joint_states_topic', value='/t8/joint_states'),
        Parameter('command_topic', value='/t8/commands'),
        Parameter('trajectory_topic', value='/t8/trajectory'),
        Parameter('mode', value='trajectory')]))
    steps = []
    ctrl.add_step_observer(steps.append)

    def step(stamp_s):
        return _control_step(ctrl, steps, stamp_s)

    assert step(10.0).feedforward is None           # t0: the trajectory clock starts here
    per_joint = np.arange(1.0, 7.0)                 # effort of point k, joint j: k * (j + 1)
    efforts = np.outer([0.0, 1.0, 2.0], per_joint)[:, ::-1]     # reversed joint order
    ctrl._on_trajectory(_trajectory(reversed(UR5_NAMES), 11.0, [0.0, 0.5, 1.0], efforts))
    assert ctrl.counters['trajectories'] == 1
    assert step(10.5).feedforward is None           # t = 0.5: before the points (start t = 1)
    assert ctrl.counters['steps_without_trajectory_effort'] == 2
    np.testing.assert_allclose(step(11.25).feedforward, 0.5 * per_joint, rtol=1e-6)
    np.testing.assert_allclose(step(11.75).feedforward, 1.5 * per_joint, rtol=1e-6)
    assert step(12.5).feedforward is None           # after the last point
    ctrl._on_trajectory(_trajectory(UR5_NAMES[1:], 13.0, [0.0, 1.0], np.ones((2, 5))))
    assert ctrl.counters['rejected_trajectories'] == 1 and ctrl.counters['trajectories'] == 1
    # A pass-through trajectory (the node not ready yet): no efforts, no feedforward.
    ctrl._on_trajectory(_trajectory(UR5_NAMES, 13.0, [0.0, 1.0]))
    assert ctrl.counters['trajectories_without_effort'] == 1
    assert step(13.5).feedforward is None and step(13.5).mode == 'trajectory'
    assert np.isfinite(steps[-1].command).all()


def test_reference_switch_to_the_unseen_trajectory_is_continuous(ros):
    """reference:=unseen at runtime: the next control step blends from the running reference
    into the unseen one (another seed, 1.5x faster, another centre) with position, velocity and
    acceleration continuous; afterwards the unseen reference runs on a clock started at the
    switch. A bad value is refused and changes nothing."""
    ctrl = ros.add(TorqueControllerNode(context=ros.context, parameter_overrides=[
        Parameter('joint_states_topic', value='/t9/joint_states'),
        Parameter('command_topic', value='/t9/commands'), Parameter('mode', value='pd'),
        Parameter('trajectory_seed', value=4)]))
    steps = []
    ctrl.add_step_observer(steps.append)

    def step(stamp_s):
        return _control_step(ctrl, steps, stamp_s)

    dt = 0.002
    for k in range(50):
        step(100.0 + k * dt)                 # t0 = 100 s: trajectory time = stamp - 100
    primary = ctrl.trajectory
    assert not ctrl.set_parameters([Parameter('reference', value='elsewhere')])[0].successful
    assert ctrl.counters['rejected_reference'] == 1 and ctrl.reference == 'primary'
    assert ctrl.set_parameters([Parameter('reference', value='unseen')])[0].successful
    assert ctrl.counters['reference_switches'] == 0           # only at the next control step
    t_switch = round(50 * dt, 9)
    seen = [step(100.0 + k * dt) for k in range(50, 50 + 3000)]   # 6 s: through the blend
    assert ctrl.counters['reference_switches'] == 1
    assert ctrl.switches == [{'t_s': pytest.approx(t_switch), 'reference': 'unseen',
                              'ramp_s': ctrl.trajectory.ramp_duration}]
    assert ctrl.trajectory.ramp_duration >= 2.0
    # Continuity: at the switch step the reference is still the primary one, and no quantity
    # jumps from one 2 ms step to the next (a jump would kick the loop).
    for a, b in zip(seen[0].reference, primary.sample(t_switch)):
        np.testing.assert_allclose(a, b, atol=1e-12)
    q, qd, qdd = (np.array([s.reference[i] for s in steps]) for i in range(3))
    vmax, amax = ctrl.trajectory.max_velocity, ctrl.trajectory.max_acceleration
    assert np.max(np.abs(np.diff(q, axis=0))) <= vmax * dt * 1.01
    assert np.max(np.abs(np.diff(qd, axis=0))) <= amax * dt * 1.01
    assert np.max(np.abs(np.diff(qdd, axis=0))) < 0.5
    # After the blend: the unseen reference, its clock started at the switch.
    unseen = ctrl.reference_trajectory('unseen')
    last = seen[-1]
    assert last.t > ctrl.trajectory.ramp_end_s
    for a, b in zip(last.reference, unseen.sample(last.t - t_switch)):
        np.testing.assert_allclose(a, b, atol=1e-12)
    # ... which is another seed, 1.5x faster, centred elsewhere.
    assert unseen.seed == 5 and unseen.speed == 1.5
    assert unseen.period_s == pytest.approx(primary.period_s / 1.5)
    np.testing.assert_allclose(unseen.center - primary.center, 0.6)
    assert unseen.max_velocity == pytest.approx(1.5 * primary.max_velocity)
    # Switching back blends again (a second switch on top of the first).
    assert ctrl.set_parameters([Parameter('reference', value='primary')])[0].successful
    step(100.0 + 3050 * dt)
    assert ctrl.counters['reference_switches'] == 2 and ctrl.switches[-1]['reference'] == 'primary'
