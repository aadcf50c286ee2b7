"""FourierTrajectory: inside the limits and bounds, analytic derivatives, smooth ramp-in."""
import numpy as np
import pytest

from invdyn_ros.errors import ConfigError
from invdyn_ros.sim.trajectory import FourierTrajectory

UR5_LOWER = np.array([-2 * np.pi, -2 * np.pi, -np.pi, -2 * np.pi, -2 * np.pi, -2 * np.pi])
UR5_UPPER = -UR5_LOWER
HOME = np.array([0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0])


def make(**kw):
    args = dict(n=6, seed=1, center=HOME, lower=UR5_LOWER, upper=UR5_UPPER)
    args.update(kw)
    return FourierTrajectory(**args)


@pytest.mark.parametrize('seed', range(5))
def test_stays_inside_limits_and_bounds_over_two_periods(seed):
    lower, upper = -np.ones(6) * 1.0, np.ones(6) * 1.2  # tight limits: the margin must bind
    traj = FourierTrajectory(6, seed=seed, lower=lower, upper=upper, margin=0.1,
                             start=np.full(6, 0.9), max_velocity=1.5, max_acceleration=4.0)
    t = np.arange(-1.0, 2 * traj.period_s + traj.ramp_duration, 0.002)
    q, qd, qdd = traj.sample(t)
    assert q.shape == qd.shape == qdd.shape == (t.size, 6)
    assert np.all(q >= lower + 0.1 - 1e-9) and np.all(q <= upper - 0.1 + 1e-9)
    assert np.max(np.abs(qd)) <= 1.5 and np.max(np.abs(qdd)) <= 4.0
    # Persistently exciting: every joint actually moves a good part of its allowed range.
    span = q.max(axis=0) - q.min(axis=0)
    assert np.all(span > 0.3)


def test_derivatives_match_finite_differences():
    traj = make(seed=4)
    t = np.linspace(0.5, 30.0, 400)  # covers the ramp (2 s) and the steady Fourier part
    h = 1e-5
    q, qd, qdd = traj.sample(t)
    qp, qdp, _ = traj.sample(t + h)
    qm, qdm, _ = traj.sample(t - h)
    np.testing.assert_allclose(qd, (qp - qm) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(qdd, (qdp - qdm) / (2 * h), atol=1e-5)


def test_formula_is_swevers_fourier_series_after_the_ramp():
    traj = make(seed=2, base_freq_hz=0.2, harmonics=3)
    t = 7.3
    wf = 2 * np.pi * 0.2
    k = np.arange(1, 4)
    expected = traj.center + np.sum(traj.a / (wf * k) * np.sin(wf * k * t)
                                    - traj.b / (wf * k) * np.cos(wf * k * t), axis=1)
    np.testing.assert_allclose(traj.sample(t)[0], expected, atol=1e-12)
    # Periodic with the base period.
    np.testing.assert_allclose(traj.sample(t + traj.period_s)[0], expected, atol=1e-9)


def test_ramp_in_starts_at_rest_at_the_start_pose_and_is_continuous():
    start = HOME + 0.5
    traj = make(start=start)
    for t in (-5.0, 0.0):
        q, qd, qdd = traj.sample(t)
        np.testing.assert_allclose(q, start)
        np.testing.assert_allclose(qd, 0.0, atol=1e-12)
        np.testing.assert_allclose(qdd, 0.0, atol=1e-12)
    # No jumps anywhere (acceleration continuous across the ramp end too).
    t = np.arange(0.0, traj.ramp_duration + 2.0, 0.001)
    q, qd, qdd = traj.sample(t)
    assert np.max(np.abs(np.diff(qdd, axis=0))) < 0.05
    assert traj.ramp_duration >= 2.0


def test_same_seed_same_trajectory_other_seed_different():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    t = np.linspace(0, 20, 50)
    np.testing.assert_array_equal(a.sample(t)[0], b.sample(t)[0])
    assert np.max(np.abs(a.sample(t)[0] - c.sample(t)[0])) > 0.1


@pytest.mark.parametrize('ramp_s', [0.0, 2.0])
def test_scalar_and_array_sampling_agree(ramp_s):
    # The scalar fast path must match, ramp (or none) included.
    traj = make(ramp_s=ramp_s, start=HOME + 0.3 if ramp_s else None)
    times = np.concatenate([[-1.0, 0.0, 1e-6], np.linspace(0.0, 3 * traj.ramp_duration + 5, 97)])
    arrays = traj.sample(times)
    for i, t in enumerate(times):
        scalar = traj.sample(float(t))
        assert scalar[0].shape == (6,)
        for k in range(3):
            np.testing.assert_allclose(scalar[k], arrays[k][i], rtol=1e-12, atol=1e-12)


def test_rejects_bad_arguments():
    with pytest.raises(ConfigError, match='harmonics'):
        FourierTrajectory(6, harmonics=0)
    with pytest.raises(ConfigError, match='max_velocity'):
        FourierTrajectory(6, max_velocity=float('nan'))
    with pytest.raises(ConfigError, match='lower'):
        FourierTrajectory(6, lower=[0.0, 1.0])
    with pytest.raises(ConfigError, match='margin'):
        FourierTrajectory(2, lower=[0, 0], upper=[0.1, 0.1], margin=0.1)
    with pytest.raises(ValueError):
        make().sample(float('nan'))


# ---------------------------------------------------------------------------- speed, switching
def test_speed_plays_the_same_motion_faster():
    slow, fast = make(seed=2, ramp_s=0.0), make(seed=2, ramp_s=0.0, speed=1.5)
    assert fast.period_s == pytest.approx(slow.period_s / 1.5)
    t = np.linspace(0.0, 2 * fast.period_s, 301)
    q, qd, qdd = fast.sample(t)
    q1, qd1, qdd1 = slow.sample(1.5 * t)
    np.testing.assert_allclose(q, q1, atol=1e-12)
    np.testing.assert_allclose(qd, 1.5 * qd1, atol=1e-12)
    np.testing.assert_allclose(qdd, 2.25 * qdd1, atol=1e-12)
    assert np.max(np.abs(qd)) > 1.2 * np.max(np.abs(qd1))      # faster than the original gets
    with pytest.raises(ConfigError, match='speed'):
        make(speed=0.0)


def _switched(t_switch=23.7, min_ramp=2.0):
    from invdyn_ros.sim.trajectory import SwitchedTrajectory
    old = make(start=HOME + 0.3)
    new = make(seed=2, speed=1.5, center=HOME + 0.5, ramp_s=0.0)
    return old, new, SwitchedTrajectory(old, new, t_switch, min_ramp)


def test_switch_starts_on_the_old_reference_and_ends_on_the_new_one():
    old, new, sw = _switched()
    assert sw.ramp_duration >= 2.0 and sw.ramp_end_s == pytest.approx(23.7 + sw.ramp_duration)
    for t in (5.0, 23.7):                                       # up to the switch: the old one
        for a, b in zip(sw.sample(t), old.sample(t)):
            np.testing.assert_allclose(a, b, atol=1e-12)
    for t in (sw.ramp_end_s, sw.ramp_end_s + 7.3):             # after the blend: the new one,
        for a, b in zip(sw.sample(t), new.sample(t - 23.7)):    # its clock started at the switch
            np.testing.assert_allclose(a, b, atol=1e-12)
    # Continuous position, velocity and acceleration through the switch and the blend: no step
    # larger than what 1 ms of the bounded motion allows.
    t = np.arange(20.0, sw.ramp_end_s + 2.0, 0.001)
    q, qd, qdd = sw.sample(t)
    assert np.max(np.abs(np.diff(q, axis=0))) < 1e-3 * sw.max_velocity * 1.01
    assert np.max(np.abs(np.diff(qd, axis=0))) < 1e-3 * sw.max_acceleration * 1.01
    assert np.max(np.abs(np.diff(qdd, axis=0))) < 0.2
    # Derivatives are the derivatives (finite differences inside the blend).
    mid = (t > 23.8) & (t < sw.ramp_end_s - 0.1)
    np.testing.assert_allclose(np.gradient(q, t, axis=0)[mid], qd[mid], atol=2e-4)
    np.testing.assert_allclose(np.gradient(qd, t, axis=0)[mid], qdd[mid], atol=2e-3)
    # Inside the bounds (the larger of the two references') and the limits.
    assert np.max(np.abs(qd)) <= sw.max_velocity and np.max(np.abs(qdd)) <= sw.max_acceleration
    assert sw.max_velocity == pytest.approx(1.5 * 1.5)
    assert np.all(q > UR5_LOWER) and np.all(q < UR5_UPPER)


def test_switch_scalar_and_array_sampling_agree():
    _, _, sw = _switched(t_switch=10.0)
    times = np.array([0.0, 9.99, 10.0, 10.5, 11.0, sw.ramp_end_s, 30.0])
    arrays = sw.sample(times)
    for i, t in enumerate(times):
        for k, value in enumerate(sw.sample(float(t))):
            np.testing.assert_allclose(value, arrays[k][i], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        sw.sample(float('nan'))


def test_switch_lengthens_a_ramp_too_short_for_the_bounds():
    _, _, sw = _switched(min_ramp=0.05)
    assert sw.ramp_duration > 0.05          # a 50 ms blend over ~1 rad would break the bounds
    t = np.linspace(23.7, sw.ramp_end_s, 2000)
    _, qd, qdd = sw.sample(t)
    assert np.max(np.abs(qd)) <= sw.max_velocity and np.max(np.abs(qdd)) <= sw.max_acceleration
