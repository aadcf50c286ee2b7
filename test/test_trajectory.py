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
