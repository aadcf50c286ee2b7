"""trajectory_feedforward: the learned effort of every point of a planned trajectory.

The reference for "the pipeline's prediction for the desired states" is computed here directly:
the analytic desired motion sampled on the pipeline's grid, ``make_windows``, each network's
``Predictor.predict_many``, the identifier's per-joint choice, the clamp. Tolerances: 1e-6 N m
where the points lie on the grid (the same float32 forward; only the spline's float64 rounding
differs), 2 % of the torque range where the points are sparse (interpolation between points).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer
from invdyn_ros.pipeline.trajectory_feedforward import (MAX_POINTS, TrajectoryError,
                                                        TrajectorySpline, annotate_trajectory,
                                                        insert_points, pipeline_rate_hz)
from invdyn_ros.stages.windows import make_windows

torch.set_num_threads(1)
NAMES = ['j1', 'j2']
RATE = 100.0
PARAMS = {'joint_names': NAMES, 'hidden_size': 8, 'num_layers': 1, 'window': 4,
          'min_samples': 32, 'batch_size': 16, 'updates_per_sample': 0.3,
          'learning_rate': 3e-3, 'poll_every': 10, 'dual_window': 20, 'rate_hz': RATE,
          'ready_window': 50, 'ready_min_samples': 60, 'ready_nmse': 5.0,
          'torque_limits': [50.0, 50.0]}


def motion(t):
    """Analytic desired motion (q, qd, qdd), each (len(t), 2), and a torque of it."""
    t = np.asarray(t, dtype=float)[:, None]
    w = np.array([2.0, 3.1])
    q = 0.6 * np.sin(w * t + np.array([0.3, 1.0]))
    qd = 0.6 * w * np.cos(w * t + np.array([0.3, 1.0]))
    qdd = -0.6 * w ** 2 * np.sin(w * t + np.array([0.3, 1.0]))
    return q, qd, qdd, 5.0 * np.sin(q) + qd + 0.2 * qdd


class FrozenTrainer:
    """Hands out one fixed set of weights and never learns (the predictions stay comparable)."""

    def __init__(self, weights):
        self._weights = weights

    def submit(self, window, tau):
        pass

    def poll(self):
        w, self._weights = self._weights, None
        return w

    def stats(self):
        return {}

    def save(self, prefix):
        return {}

    def close(self):
        pass


@pytest.fixture(scope='module')
def weights():
    torch.manual_seed(0)
    cfg = PipelineConfig.from_params(PARAMS)
    trainer = make_trainer(cfg, 'inline')
    pipe = Pipeline(cfg, trainer)
    t = 100.0 + np.arange(800) / RATE
    q, qd, qdd, tau = motion(t)
    for i in range(len(t)):
        pipe.process(t[i], q[i], qd[i], tau[i])
    return {name: lr.export_weights() for name, lr in trainer.learners.items()}


def make_pipeline(weights, ready=True, **overrides):
    cfg = PipelineConfig.from_params(dict(PARAMS, **overrides))
    pipe = Pipeline(cfg, FrozenTrainer(weights))
    if ready:
        t = 500.0 + np.arange(200) / RATE
        q, qd, qdd, tau = motion(t)
        for i in range(len(t)):
            pipe.process(t[i], q[i], qd[i], tau[i])
        assert pipe.ready
    return pipe


def direct(pipe, q, qd, qdd):
    """The pipeline's prediction for every full window of a dense desired sequence (rows i >= L-1),
    selected and clamped like the annotation."""
    L = pipe.window
    W = make_windows(np.concatenate((q, qd, qdd), axis=1), L)
    pa = pipe.predictors['lstm'].predict_many(W)
    pb = pipe.predictors['gru'].predict_many(W)
    torque = np.where(pipe.identifier.active == 1, pb, pa)
    lim = np.asarray(pipe.config.torque_limits)
    return np.clip(torque, -lim, lim)


def test_points_on_the_grid_get_exactly_the_prediction_for_their_window(weights):
    pipe = make_pipeline(weights)
    t = np.arange(300) / RATE
    q, qd, qdd, _ = motion(t)
    res = annotate_trajectory(pipe, NAMES, t, q, qd, qdd)
    assert res.annotated and res.rate_hz == RATE and res.efforts.shape == (300, 2)
    ref = direct(pipe, q, qd, qdd)
    L = pipe.window
    np.testing.assert_allclose(res.efforts[L - 1:], ref, atol=1e-6)
    assert not res.outside.any()
    assert np.abs(res.efforts).max() > 1.0          # a real torque, not zeros
    # the grid windows: point i's window is rows i-L+1..i, the first ones hold the first point
    np.testing.assert_allclose(res.q, q, atol=1e-12)


def test_sparse_points_and_missing_derivatives_give_the_dense_prediction(weights):
    pipe = make_pipeline(weights)
    dense_t = np.arange(400) / RATE
    ref = direct(pipe, *motion(dense_t)[:3])
    span = np.ptp(ref, axis=0)
    every = 5                                        # points every 50 ms
    t = dense_t[::every]
    q, qd, qdd, _ = motion(t)
    L = pipe.window
    idx = np.arange(0, 400, every)
    keep = idx >= L - 1 + every                      # points with an analytic history
    for given in ((q, qd, qdd), (q, qd, None), (q, None, None)):
        res = annotate_trajectory(pipe, NAMES, t, *given)
        use = keep.copy()
        if given[1] is None:
            # positions alone: the spline is at rest at both ends (JTC's positions_upsampling),
            # this motion is not; the difference dies out within a few points of each end
            use[:5] = use[-5:] = False
        err = np.abs(res.efforts[use] - ref[idx[use] - (L - 1)]).max(axis=0)
        assert (err < 0.02 * span).all(), (len([g for g in given if g is not None]), err, span)


def test_joint_order_by_name_and_extra_joints_keep_their_effort(weights):
    pipe = make_pipeline(weights)
    t = np.arange(50) / RATE
    q, qd, qdd, _ = motion(t)
    base = annotate_trajectory(pipe, NAMES, t, q, qd, qdd).efforts
    names = ['j2', 'gripper', 'j1']

    def mixed(a, extra):
        return np.column_stack([a[:, 1], np.full(len(t), extra), a[:, 0]])

    eff_in = mixed(np.zeros((50, 2)), 0.7)
    res = annotate_trajectory(pipe, names, t, mixed(q, 0.01), mixed(qd, 0.0), mixed(qdd, 0.0),
                              eff_in)
    assert res.joint_names == tuple(names)
    np.testing.assert_allclose(res.efforts[:, [2, 0]], base, atol=1e-12)
    np.testing.assert_array_equal(res.efforts[:, 1], 0.7)
    res = annotate_trajectory(pipe, names, t, mixed(q, 0.01))       # no efforts: extra gets 0
    np.testing.assert_array_equal(res.efforts[:, 1], 0.0)
    with pytest.raises(TrajectoryError, match=r"\['j1'\] missing"):
        annotate_trajectory(pipe, ['j2', 'gripper'], t, q)
    with pytest.raises(TrajectoryError, match='duplicate'):
        annotate_trajectory(pipe, ['j1', 'j1', 'j2'], t, mixed(q, 0.0))


def test_passes_through_unchanged_before_ready(weights):
    pipe = make_pipeline(weights, ready=False)
    assert not pipe.ready
    t = np.arange(20) / RATE
    q, qd, qdd, _ = motion(t)
    res = annotate_trajectory(pipe, NAMES, t, q, qd, qdd)
    assert not res.annotated and res.efforts is None and 'not ready' in res.reason
    eff = np.ones((20, 2))
    res = annotate_trajectory(pipe, NAMES, t, q, qd, qdd, eff)
    assert not res.annotated and res.efforts is not None
    np.testing.assert_array_equal(res.efforts, eff)
    # offline use may annotate anyway, and says so
    res = annotate_trajectory(pipe, NAMES, t, q, qd, qdd, require_ready=False)
    assert res.annotated and 'not ready' in res.reason
    # no rate known and none given: unchanged
    pipe2 = make_pipeline(weights, ready=False, rate_hz=0.0)
    assert pipeline_rate_hz(pipe2) is None
    res = annotate_trajectory(pipe2, NAMES, t, q, require_ready=False)
    assert not res.annotated and 'rate' in res.reason
    assert annotate_trajectory(pipe2, NAMES, t, q, require_ready=False, rate_hz=RATE).annotated


def test_efforts_are_clamped_to_the_torque_limits(weights):
    # one primed pipeline, then tighter limits for the annotation only: priming a pipeline with
    # the tight limits would reject its labels (beyond 1.5 x the limits: never learned or
    # scored) and it would never become ready
    pipe = make_pipeline(weights)
    t = np.arange(200) / RATE
    q, qd, qdd, _ = motion(t)
    raw = annotate_trajectory(pipe, NAMES, t, q, qd, qdd).efforts
    lim = 0.5 * np.abs(raw).max(axis=0)
    pipe.config = dataclasses.replace(pipe.config, torque_limits=tuple(lim.tolist()))
    res = annotate_trajectory(pipe, NAMES, t, q, qd, qdd)
    assert (np.abs(res.efforts) <= lim + 1e-12).all()
    assert (np.isclose(np.abs(res.efforts), lim)).any(axis=0).all()
    np.testing.assert_allclose(res.efforts, np.clip(raw, -lim, lim), atol=1e-9)


def test_bad_input_is_rejected(weights):
    pipe = make_pipeline(weights)
    t = np.arange(10) / RATE
    q, qd, qdd, _ = motion(t)
    bad = q.copy()
    bad[3, 1] = np.nan
    for kwargs, match in [
            (dict(positions=bad), 'positions: contains NaN'),
            (dict(positions=q, velocities=np.full((10, 2), np.inf)), 'velocities'),
            (dict(positions=q[:5]), 'positions: expected shape'),
            (dict(positions=q, accelerations=qdd), 'without velocities'),
            (dict(positions=np.full((10, 2), 1e3)), 'max_abs_position')]:
        with pytest.raises(TrajectoryError, match=match):
            annotate_trajectory(pipe, NAMES, t, **kwargs)
    for times in (t[::-1], np.r_[t[:5], t[4:9]], np.r_[t[:9], np.nan]):
        with pytest.raises(TrajectoryError, match='times'):
            annotate_trajectory(pipe, NAMES, times, q)
    assert isinstance(TrajectoryError('x'), ValueError)


def test_points_outside_the_trained_region_get_zero_or_the_prior(weights):
    pipe = make_pipeline(weights)
    t = np.arange(60) / RATE
    q, qd, qdd, _ = motion(t)
    q = q.copy()
    q[40:, 0] += 20.0                      # far beyond anything trained on
    qd[40:] = qdd[40:] = 0.0
    res = annotate_trajectory(pipe, NAMES, t, q, qd, qdd)
    assert res.outside[40:].all() and not res.outside[:40].any() and res.n_outside == 20
    np.testing.assert_array_equal(res.efforts[40:], 0.0)
    assert not res.prior_used

    def prior(q_, qd_, qdd_):
        return np.column_stack([q_[:, 0], np.full(len(q_), 100.0)])   # j2 beyond its limit

    res = annotate_trajectory(pipe, NAMES, t, q, qd, qdd, prior=prior)
    assert res.prior_used
    np.testing.assert_allclose(res.efforts[40:, 0], q[40:, 0])
    np.testing.assert_array_equal(res.efforts[40:, 1], 50.0)          # clamped
    res2 = annotate_trajectory(pipe, NAMES, t, q, qd, qdd, prior=lambda *a: np.full((1, 1), 1.0))
    assert not res2.prior_used and (res2.efforts[40:] == 0.0).all()   # unusable prior: zero


def test_spline_matches_the_points_and_holds_outside():
    t = np.array([0.0, 0.3, 0.7, 1.0])
    q, qd, qdd, _ = motion(t)
    for given in ((q, qd, qdd), (q, qd, None), (q, None, None)):
        s = TrajectorySpline(t, *given)
        sq, sqd, sqdd = s.sample(t)
        np.testing.assert_allclose(sq, q, atol=1e-12)
        if given[1] is not None:
            np.testing.assert_allclose(sqd, qd, atol=1e-12)
        if given[2] is not None:
            np.testing.assert_allclose(sqdd, qdd, atol=1e-9)
        before = s.sample(np.array([-0.5]))
        np.testing.assert_allclose(before[0][0], sq[0])
    # positions alone: the C2 cubic spline at rest at both ends that JTC's positions_upsampling
    # builds (its knot velocities from a global solve with v = 0 at the first and last point)
    s = TrajectorySpline(t, q)
    _, sqd, _ = s.sample(t)
    np.testing.assert_allclose(sqd[[0, -1]], 0.0, atol=1e-12)
    inner = np.linspace(0.01, 0.99, 99)
    for k in range(3):
        a = s.sample(inner)[k]
        b = s.sample(inner + 1e-7)[k]
        assert np.abs(a - b).max() < 1e-3                # continuous up to the acceleration
    single = TrajectorySpline(t[:1], q[:1])
    sq, sqd, sqdd = single.sample(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(sq, np.repeat(q[:1], 3, axis=0))
    assert not sqd.any() and not sqdd.any()


def test_dual_selection_follows_the_identifier_and_falls_back_on_a_broken_network(weights):
    pipe = make_pipeline(weights)
    t = np.arange(80) / RATE
    q, qd, qdd, _ = motion(t)
    L = pipe.window
    W = make_windows(np.concatenate((q, qd, qdd), axis=1), L)
    pa = pipe.predictors['lstm'].predict_many(W)
    pb = pipe.predictors['gru'].predict_many(W)
    for active in ([0, 0], [1, 0], [1, 1]):
        pipe.identifier._active[:] = active
        pipe.identifier._set_masks()          # the choice's derived state (needed networks)
        res = annotate_trajectory(pipe, NAMES, t, q, qd, qdd)
        np.testing.assert_allclose(res.efforts[L - 1:],
                                   np.where(np.array(active) == 1, pb, pa), atol=1e-6)
    # the active network (gru, every joint) returns NaN: the lstm's prediction is used
    pipe.identifier._active[:] = 1
    pipe.identifier._set_masks()
    gru = pipe.predictors['gru']
    real = gru.predict_many
    gru.predict_many = lambda w: np.full((len(w), 2), np.nan)
    try:
        res = annotate_trajectory(pipe, NAMES, t, q, qd, qdd)
    finally:
        gru.predict_many = real
    np.testing.assert_allclose(res.efforts[L - 1:], pa, atol=1e-6)
    assert not res.outside.any()


@pytest.mark.parametrize('with_acc', [True, False])
def test_inserted_points_lie_on_the_controllers_spline_and_keep_the_originals(with_acc):
    """JTC's motion through the points with the inserted ones is its motion through the original
    points (quintic / cubic segments restricted to sub-intervals); the originals stay bit for
    bit; an extra joint's efforts at the new points are the linear interpolation JTC applies."""
    rng = np.random.default_rng(3)
    t = np.array([0.0, 0.1, 0.15, 0.35, 0.36, 0.5])
    q, qd, qdd = (rng.normal(size=(6, 3)) for _ in range(3))
    acc = qdd if with_acc else None
    eff = rng.normal(size=(6, 3))
    T, P, V, A, E, new = insert_points(t, q, qd, acc, eff, 0.02)
    assert np.diff(T).max() <= 0.02 + 1e-12 and (np.diff(T) > 0).all()
    np.testing.assert_array_equal(T[~new], t)
    for got, want in ((P, q), (V, qd), (E, eff)):
        np.testing.assert_array_equal(got[~new], want)
    assert (A is None) == (not with_acc)
    # 0.1 s -> 5 parts, 0.05 -> 3 (0.0167 s each), 0.2 -> 10, 0.01 -> 1, 0.14 -> 7
    assert int(new.sum()) == 4 + 2 + 9 + 0 + 6
    dense = np.linspace(-0.01, 0.51, 2001)
    for a, b in zip(TrajectorySpline(t, q, qd, acc).sample(dense),
                    TrajectorySpline(T, P, V, A).sample(dense)):
        np.testing.assert_allclose(b, a, atol=1e-9)
    for j in range(3):
        np.testing.assert_allclose(E[:, j], np.interp(T, t, eff[:, j]), atol=1e-12)
    same = insert_points(t, q, qd, acc, eff, 1.0)            # nothing further apart: unchanged
    assert not same[-1].any() and same[0] is t
    # points max_point_dt apart up to the nanosecond rounding of time_from_start: none inserted
    grid = np.round(np.arange(200) * 0.02 * 1e9) * 1e-9 + rng.uniform(-2e-9, 2e-9, 200)
    z = np.zeros((200, 3))
    assert not insert_points(grid, z, z, z, None, 0.02)[-1].any()


def test_annotation_with_inserted_points(weights):
    pipe = make_pipeline(weights)
    t = np.arange(0, 41) * 0.05                               # points every 50 ms
    q, qd, qdd, _ = motion(t)
    plain = annotate_trajectory(pipe, NAMES, t, q, qd, qdd)
    res = annotate_trajectory(pipe, NAMES, t, q, qd, qdd, max_point_dt=0.02)
    assert res.annotated and res.inserted == 2 * 40 and len(res.times) == 41 + 80
    positions, velocities, accelerations, new = res.points
    assert res.efforts.shape == (121, 2) and positions.shape == (121, 2) and new.sum() == 80
    # the original points get the efforts they get without insertion
    np.testing.assert_allclose(res.efforts[~new], plain.efforts, atol=1e-9)
    # and every point, old or new, the prediction for the analytic motion there, as a dense
    # trajectory through all of them would give
    dense = annotate_trajectory(pipe, NAMES, res.times, *motion(res.times)[:3])
    span = np.ptp(dense.efforts, axis=0)
    late = res.times >= 0.1
    assert (np.abs(res.efforts - dense.efforts)[late].max(axis=0) < 0.02 * span).all()
    # positions alone: JTC interpolates them linearly, points on a curve would change the motion
    only = annotate_trajectory(pipe, NAMES, t, q, max_point_dt=0.02)
    assert only.annotated and only.inserted == 0 and only.points is None
    assert 'no velocities' in only.warning
    # a plan that would grow beyond MAX_POINTS is annotated as it is, with a warning
    long_t = np.array([0.0, MAX_POINTS * 0.02])
    big = annotate_trajectory(pipe, NAMES, long_t, np.zeros((2, 2)), np.zeros((2, 2)),
                              max_point_dt=0.02)
    assert big.inserted == 0 and f'{MAX_POINTS} points' in big.warning
    for bad in (-0.01, float('nan'), float('inf')):
        with pytest.raises(TrajectoryError, match='max_point_dt'):
            annotate_trajectory(pipe, NAMES, t, q, qd, max_point_dt=bad)
    # before ready nothing is inserted: the trajectory passes through as it came
    unready = annotate_trajectory(make_pipeline(weights, ready=False), NAMES, t, q, qd,
                                  max_point_dt=0.02)
    assert not unready.annotated and unready.inserted == 0 and len(unready.times) == 41
