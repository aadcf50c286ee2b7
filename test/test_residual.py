"""residual.py and the pipeline with a physics prior: prior + trusted residual, residual labels,
the batch form, minus_gravity, off-region behaviour, and a wrong URDF that never wins a joint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer
from invdyn_ros.sim.arm import ArmConfig, SimulatedArm, find_robot_urdf
from invdyn_ros.sim.trajectory import FourierTrajectory
from invdyn_ros.stages.physics import PhysicsPrior, RobotModel
from invdyn_ros.stages.residual import VisitedRegion, trust_of

torch.set_num_threads(1)
UR5 = ['shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
       'wrist_2_joint', 'wrist_3_joint']
LIMITS = [150.0, 150.0, 150.0, 28.0, 28.0, 28.0]
RATE = 100.0
URDF = find_robot_urdf('ur5').read_text()


def recording(arm, seed=0, seconds=20.0, t0=100.0, **kw):
    """(t, q, qd, tau): a Fourier trajectory and the arm's exact inverse dynamics."""
    traj = FourierTrajectory(6, seed=seed, **kw)
    t = np.arange(0.0, seconds, 1.0 / RATE)
    q, qd, qdd = traj.sample(t)
    tau = np.array([arm.rnea(a, b, c) for a, b, c in zip(q, qd, qdd)])
    return t + t0, q, qd, tau


def params(**kw):
    p = {'joint_names': UR5, 'torque_limits': LIMITS, 'rate_hz': RATE, 'filter_cutoff_hz': 20.0,
         'window': 5, 'hidden_size': 16, 'num_layers': 1, 'min_samples': 64, 'batch_size': 32,
         'updates_per_sample': 0.2, 'ready_min_samples': 100, 'ready_window': 100,
         'dual_window': 100, 'prior': 'rnea', 'robot_description': URDF,
         'identification_regularization': 0.01}
    p.update(kw)
    return p


@pytest.fixture(scope='module')
def arm():
    return SimulatedArm(ArmConfig(payload_kg=1.0, friction_eps=0.05))


class LabelTrainer:
    """Records the labels the pipeline submits (never learns; the initial weights of a real
    inline trainer, so the networks output something)."""

    def __init__(self, config):
        self.inner = make_trainer(config, 'inline')
        self.labels = []

    def submit(self, window, tau):
        self.labels.append(np.array(tau, dtype=np.float64))

    def poll(self):
        return self.inner.poll()

    def stats(self):
        return {}

    def save(self, prefix):
        return {}

    def close(self):
        pass


# ------------------------------------------------------------------------------ the region
def test_visited_region_distance_in_std_units_and_trust():
    region = VisitedRegion(2, capacity=64, seed=0)
    assert region.distance(np.zeros(2)) == np.inf
    assert trust_of(np.inf, 0.5) == 0.0
    rng = np.random.default_rng(0)
    for x in rng.normal(size=(1000, 2)) * [1.0, 10.0]:
        region.add(x)
    assert len(region) == 64
    assert region.distance(np.array([0.0, 0.0])) < 0.4
    far = region.distance(np.array([8.0, 80.0]))       # ~6 std away on both axes
    assert far > 4.0
    np.testing.assert_allclose(region.distance_many(np.array([[0.0, 0.0], [8.0, 80.0]])),
                               [region.distance(np.zeros(2)), far], rtol=1e-6)
    assert trust_of(0.3, 0.5) == 1.0 and trust_of(far, 0.5) < 1e-6


def test_residual_counts_says_where_combine_adds_the_residual():
    from invdyn_ros.stages.residual import PhysicsStage
    stage = PhysicsStage(PipelineConfig.from_params(params()).physics, UR5)
    rng = np.random.default_rng(0)
    tp = stage.begin(*rng.normal(size=(3, 6)))
    residual = np.full(6, 0.5)
    for trust, gate in ((0.0, [1, 1, 0, 0, 1, 0]), (0.4, [1, 1, 0, 0, 1, 0]), (1.0, [0] * 6)):
        stage.trust = trust
        stage.gate[:] = gate
        added = stage.combine(residual) != tp
        np.testing.assert_array_equal(stage.residual_counts(), added)


# ------------------------------------------------------------------------------ pipeline
def test_output_starts_as_the_prior_and_networks_learn_the_residual(arm):
    config = PipelineConfig.from_params(params(dual_enabled=True, identify=False))
    assert config.residual_network == 'lstm' and config.predictor_labels == ('rnea+lstm', 'gru')
    trainer = LabelTrainer(config)
    pipe = Pipeline(config, trainer)
    t, q, qd, tau = recording(arm)
    prior = PhysicsPrior(RobotModel(URDF, UR5))
    first = None
    for i in range(300):
        out = pipe.process(t[i], q[i], qd[i], tau[i])
        if out is not None and first is None:
            first = out
            # before any labelled state the residual is not trusted: the prior itself
            np.testing.assert_allclose(out.predictions['lstm'],
                                       prior.predict(out.q, out.qd, out.qdd), atol=1e-9)
    assert first is not None
    # every submitted label: row 0 (residual network) = row 1 (black box) - tau_prior
    assert len(trainer.labels) > 200
    lab = np.array(trainer.labels)
    assert lab.shape[1:] == (2, 6)
    assert np.abs(lab[:, 1] - lab[:, 0]).max() > 1.0          # the prior is not zero
    # the residual of the exact URDF is only the payload and friction: much smaller than tau
    assert np.abs(lab[:, 0]).mean() < 0.2 * np.abs(lab[:, 1]).mean()
    pipe.close()


def test_prior_makes_the_node_ready_before_any_network_learned(arm):
    config = PipelineConfig.from_params(params(dual_enabled=False, ready_nmse=0.1))
    trainer = LabelTrainer(config)                   # networks never learn
    pipe = Pipeline(config, trainer)
    t, q, qd, tau = recording(arm, seconds=8.0)
    ready_at = None
    for i in range(len(t)):
        out = pipe.process(t[i], q[i], qd[i], tau[i])
        if out is not None and out.ready and ready_at is None:
            ready_at = t[i] - t[0]
    assert ready_at is not None and ready_at < 3.0, ready_at
    stats = pipe.stats()['physics']
    assert stats['identification']['solves'] > 0
    pipe.close()


@pytest.mark.parametrize('fallback', ['prior', 'zeros'])
def test_the_prior_alone_is_the_fallback_while_the_learned_prediction_is_not_ready(arm, fallback):
    """A learned prediction 30 N m off on every joint (the combination patched: a residual gone
    wrong) is never ready; the identified prior, scored on the same measured torques, is -- so
    the feedforward may carry the prior alone (feedforward_fallback: prior), clamped; with
    'zeros' there is no fallback."""
    config = PipelineConfig.from_params(params(dual_enabled=False, ready_nmse=0.1,
                                               feedforward_fallback=fallback))
    pipe = Pipeline(config, LabelTrainer(config))
    combine = pipe.physics.combine
    pipe.physics.combine = lambda residual: combine(residual) + 30.0
    prior = pipe.physics.prior                       # the identified model
    t, q, qd, tau = recording(arm, seconds=8.0)
    ready_at, out = None, None
    for i in range(len(t)):
        out = pipe.process(t[i], q[i], qd[i], tau[i]) or out
        if ready_at is None and pipe.fallback_ready:
            ready_at = t[i] - t[0]
    assert not pipe.ready and out is not None
    if fallback == 'zeros':
        assert pipe.prior_readiness is None and ready_at is None
        assert pipe.stats()['prior_ready'] is None
        pipe.close()
        return
    assert ready_at is not None and ready_at < 3.0, ready_at
    assert pipe.prior_readiness.nmse < 0.1 < pipe.readiness.nmse
    assert pipe.stats()['prior_ready'] is True
    # the last sample's prior (the identification has moved the parameters a little since)
    np.testing.assert_allclose(pipe.prior_torque(), pipe.physics.tau_prior, atol=1e-12)
    np.testing.assert_allclose(pipe.physics.tau_prior, prior.predict(out.q, out.qd, out.qdd),
                               atol=0.2)
    assert np.abs(out.torque - pipe.physics.tau_prior).min() > 25.0
    saved = pipe.physics.tau_prior.copy()
    pipe.physics.tau_prior[:] = [1e6, -1e6, 1e6, -1e6, 1e6, -1e6]    # clamped, never passed on
    np.testing.assert_array_equal(pipe.prior_torque(), np.array(LIMITS) * [1, -1, 1, -1, 1, -1])
    pipe.physics.tau_prior[:] = saved
    # a reference: its own prior, clamped (the last valid reference's)
    ref = pipe.predict_reference(q[10], qd[10], np.zeros(6))
    assert ref is not None
    np.testing.assert_allclose(pipe.prior_torque(reference=True),
                               np.clip(prior.predict(q[10], qd[10], np.zeros(6)),
                                       -np.array(LIMITS), LIMITS), atol=1e-9)
    # the learned prediction right again: it is ready and the fallback is not needed
    pipe.physics.combine = combine
    for i in range(len(t)):
        pipe.process(t[i] + 10.0, q[i], qd[i], tau[i])
    assert pipe.ready and not pipe.fallback_ready
    pipe.close()


def test_batch_form_equals_the_streaming_form_with_a_prior(arm):
    config = PipelineConfig.from_params(params(dual_enabled=True, identify=False))
    t, q, qd, tau = recording(arm, seconds=6.0)
    torch.manual_seed(0)
    a = Pipeline(config, make_trainer(config, 'inline'))
    torch.manual_seed(0)
    b = Pipeline(config, make_trainer(config, 'inline'))
    for i in range(300):                              # both learn the same first part
        a.process(t[i], q[i], qd[i], tau[i])
        b.process(t[i], q[i], qd[i], tau[i])
    a.refresh_weights()
    b.refresh_weights()
    # learning off for the rest (what process_arrays does): no samples to the trainer, no new
    # weights, no identification / visited-region updates
    a.trainer.submit = b.trainer.submit = lambda *args: None
    a.trainer.poll = b.trainer.poll = lambda: None
    a.physics.learn = lambda *args: None
    outs = [a.process(t[i], q[i], qd[i], tau[i]) for i in range(300, len(t))]
    batch = b.process_arrays(t[300:], q[300:], qd[300:], tau[300:])
    rows = [k for k, o in enumerate(outs) if o is not None and batch.valid[k] and k > 10]
    assert len(rows) > 200
    for name in ('lstm', 'gru'):
        got = np.array([outs[k].predictions[name] for k in rows])
        np.testing.assert_allclose(batch.predictions[name][rows], got, atol=2e-3)
    np.testing.assert_allclose(batch.uncertainty[rows],
                               np.array([outs[k].uncertainty for k in rows]), atol=2e-3)
    a.close()
    b.close()


def test_minus_gravity_is_total_minus_the_models_gravity(arm):
    config = PipelineConfig.from_params(params(feedforward_mode='minus_gravity', identify=False,
                                               dual_enabled=False))
    pipe = Pipeline(config, LabelTrainer(config))
    prior = PhysicsPrior(RobotModel(URDF, UR5))
    q = np.array([0.2, -1.0, 1.2, -1.5, -1.4, 0.1])
    total = np.array([10.0, -40.0, 20.0, 3.0, -2.0, 0.5])
    np.testing.assert_allclose(pipe.feedforward(total, q), total - prior.gravity(q), atol=1e-9)
    # clamped again after the subtraction
    assert np.all(np.abs(pipe.feedforward(np.array(LIMITS), q)) <= np.array(LIMITS) + 1e-12)
    total_cfg = PipelineConfig.from_params(params(prior='none', dual_enabled=False))
    assert Pipeline(total_cfg, LabelTrainer(total_cfg)).feedforward(total, q) is total
    pipe.close()


def test_off_region_states_raise_uncertainty_and_keep_the_identified_model(arm):
    config = PipelineConfig.from_params(params(dual_enabled=False))
    torch.manual_seed(1)
    pipe = Pipeline(config, make_trainer(config, 'inline'))
    t, q, qd, tau = recording(arm, seed=0, seconds=15.0, max_amplitude=0.3)
    for i in range(len(t)):
        pipe.process(t[i], q[i], qd[i], tau[i])
    # a far-away trajectory, learning off
    pipe.trainer.submit = lambda *args: None
    pipe.trainer.poll = lambda: None
    pipe.physics.learn = lambda *args: None
    tb, qb, qdb, taub = recording(arm, seed=9, seconds=4.0, t0=t[-1] + 1.0,
                                  center=np.array([1.5, -0.5, -1.5, 1.0, 1.2, -1.0]),
                                  max_amplitude=0.3)
    near = [pipe.process(t[i] + 20.0, q[i], qd[i], tau[i]) for i in range(len(t) - 300, len(t))]
    far = [pipe.process(tb[i] + 30.0, qb[i], qdb[i], taub[i]) for i in range(len(tb))]
    near = [o for o in near[50:] if o is not None]
    far = [o for o in far[50:] if o is not None]
    stage = pipe.physics
    assert np.mean([o.uncertainty.mean() for o in far]) > \
        2.0 * np.mean([o.uncertainty.mean() for o in near])
    # far away the output is the identified model's (the residual's trust is ~0)
    for o in far[-20:]:
        np.testing.assert_allclose(o.torque, np.clip(stage.prior.predict(o.q, o.qd, o.qdd),
                                                     -np.array(LIMITS), LIMITS), atol=1e-3)
    pipe.close()


def wrong_urdf() -> str:
    """The UR5 URDF with every mass doubled and the elbow's axis flipped."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(URDF)
    for mass in root.iter('mass'):
        mass.set('value', repr(2.0 * float(mass.get('value'))))
    for joint in root.iter('joint'):
        if joint.get('name') == 'elbow_joint':
            axis = joint.find('axis')
            if axis is None:                              # URDF's default axis is x
                axis = ET.SubElement(joint, 'axis', xyz='1 0 0')
            axis.set('xyz', ' '.join(repr(-float(v)) for v in axis.get('xyz').split()))
    return ET.tostring(root, encoding='unicode')


@pytest.mark.slow
def test_a_wrong_urdf_never_makes_a_joint_worse_than_the_black_box(arm):
    """Doubled masses and a flipped axis, identification off (the worst case: the prior stays
    wrong): per joint the dual output is no worse than the black-box network alone."""
    config = PipelineConfig.from_params(params(dual_enabled=True, identify=False,
                                               robot_description=wrong_urdf()))
    torch.manual_seed(2)
    pipe = Pipeline(config, make_trainer(config, 'inline'))
    t, q, qd, tau = recording(arm, seconds=30.0)
    dual, black, meas = [], [], []
    for i in range(len(t)):
        out = pipe.process(t[i], q[i], qd[i], tau[i])
        if out is not None and i > len(t) // 2 and out.predictions.get('gru') is not None:
            dual.append(out.torque)
            black.append(out.predictions['gru'])
            meas.append(out.tau)
    dual, black, meas = map(np.array, (dual, black, meas))
    err_dual = np.sqrt(np.mean((dual - meas) ** 2, axis=0))
    err_black = np.sqrt(np.mean((black - meas) ** 2, axis=0))
    assert np.all(err_dual <= 1.1 * err_black + 1e-3), (err_dual, err_black)
    # the wrong model lost the elbow to the black-box network
    assert pipe.identifier.active[UR5.index('elbow_joint')] == 1
    pipe.close()


def test_trajectory_feedforward_includes_the_prior(arm):
    """A planned trajectory's efforts with prior: rnea are the identified model's torque plus the
    gated residual: with every gate closed, the model's torque; opened, the residual is added."""
    from invdyn_ros.pipeline.trajectory_feedforward import annotate_trajectory
    config = PipelineConfig.from_params(params(dual_enabled=False, identify=False))
    pipe = Pipeline(config, LabelTrainer(config))
    t, q, qd, tau = recording(arm, seconds=4.0)
    for i in range(len(t)):
        pipe.process(t[i], q[i], qd[i], tau[i])
    pipe.physics.gate[:] = 0.0
    traj = FourierTrajectory(6, seed=4, max_amplitude=0.3)
    times = np.linspace(0.5, 3.0, 26)
    pq, pqd, pqdd = traj.sample(times)
    res = annotate_trajectory(pipe, UR5, times, pq, pqd, pqdd, require_ready=False)
    prior = PhysicsPrior(RobotModel(URDF, UR5))
    expected = np.clip(prior.predict_many(pq, pqd, pqdd), -np.array(LIMITS), LIMITS)
    np.testing.assert_allclose(res.efforts, expected, atol=1e-6 * np.abs(expected).max() + 1e-9)
    pipe.physics.gate[:] = 1.0
    opened = annotate_trajectory(pipe, UR5, times, pq, pqd, pqdd, require_ready=False)
    inside = ~opened.outside
    assert inside.any() and np.abs(opened.efforts[inside] - expected[inside]).max() > 1e-3
    pipe.close()
