"""pipeline_physics.py: PriorSide, the pipeline's side toward the physics stage, on its own (its
behaviour inside the pipeline -- residual labels, fallback, minus_gravity -- is in
test_residual.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from invdyn_ros.errors import CheckpointError
from invdyn_ros.pipeline.pipeline import PipelineConfig
from invdyn_ros.pipeline.pipeline_physics import PriorSide
from invdyn_ros.sim.arm import find_robot_urdf
from invdyn_ros.stages.readiness import Readiness

UR5 = ['shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
       'wrist_2_joint', 'wrist_3_joint']
LIMITS = np.array([150.0, 150.0, 150.0, 28.0, 28.0, 28.0])


def side(**kw):
    config = PipelineConfig.from_params(dict(joint_names=UR5, torque_limits=list(LIMITS),
                                             rate_hz=100.0, **kw))
    def readiness():
        return Readiness(6, 100, 0.1, 2.0, 10)

    return PriorSide(config, readiness(), readiness, LIMITS)


def state(seed=0):
    rng = np.random.default_rng(seed)
    q, qd, qdd = rng.normal(size=(3, 6))
    return SimpleNamespace(q=q, qd=qd, qdd=qdd, stamp=1.0)


def test_without_a_prior_everything_passes_through():
    s = side()
    assert s.stage is None and s.residual is None and s.prior_readiness is None
    s.begin(state())
    label = np.arange(6.0)
    assert s.learns() and s.labels(label) is label
    torque = np.ones(6)
    assert s.feedforward(torque, np.zeros(6)) is torque
    assert s.prior_torque() is None and not s.fallback_ready
    assert s.load({}) is None
    assert 'no physics stage' in s.load({78: {}})
    assert s.state_dict() is None
    assert s.stats() == {'prior_ready': None, 'prior_nmse': None, 'physics': None}
    s.learn(state(), np.ones(6), 100.0)                # nothing to learn: no error


def test_with_a_prior_labels_are_residuals_and_a_failed_prior_learns_nothing():
    s = side(prior='rnea', robot_description=find_robot_urdf('ur5').read_text(),
             dual_enabled=True, second_model='gru')
    assert s.residual is not None and s.prior_readiness is not None
    st = state()
    s.begin(st)
    assert s.ok and s.learns()
    tp = s.stage.tau_prior.copy()
    label = tp + 1.0
    residual, black_box = s.labels(label)
    np.testing.assert_allclose(residual, np.ones(6))
    np.testing.assert_allclose(black_box, label)
    np.testing.assert_allclose(s.combine(None), tp)     # no network output yet: the prior
    unc = np.zeros(6)
    assert s.uncertainty(unc) is unc
    bad = state()
    bad.qd[0] = np.nan
    s.begin(bad)
    assert not s.ok and not s.learns() and s.combine(np.zeros(6)) is None
    assert s.prior_torque() is None


def test_active_labels_say_rnea_where_the_residual_does_not_count():
    labels = ['rnea+lstm', 'gru', 'rnea+lstm', 'rnea+lstm', 'gru', 'rnea+lstm']
    assert side().active_labels(['lstm'] * 6, 'lstm') == ['lstm'] * 6      # no prior: as chosen
    s = side(prior='rnea', robot_description=find_robot_urdf('ur5').read_text(),
             dual_enabled=True, second_model='gru')
    stage = s.stage
    assert stage.trust == 0.0 and not stage.gate.any()      # nothing learned: the model alone
    assert s.active_labels(labels, 'rnea+lstm') == ['rnea', 'gru', 'rnea', 'rnea', 'gru', 'rnea']
    stage.trust = 0.7
    stage.gate[[0, 1, 3]] = 1.0
    assert s.active_labels(labels, 'rnea+lstm') == \
        ['rnea+lstm', 'gru', 'rnea', 'rnea+lstm', 'gru', 'rnea']
    stage.trust = 0.0                                        # off the visited region
    assert s.active_labels(labels, 'rnea+lstm') == ['rnea', 'gru', 'rnea', 'rnea', 'gru', 'rnea']


def test_a_checkpoint_member_of_another_model_size_is_left_alone_and_a_broken_one_raises():
    s = side(prior='rnea', robot_description=find_robot_urdf('ur5').read_text())
    n = len(s.stage.prior.theta)
    theta = s.stage.prior.theta.copy()
    msg = s.load({n + 13: {'theta': np.zeros(n + 13)}})
    assert msg.startswith('WARNING') and str(n) in msg
    np.testing.assert_array_equal(s.stage.prior.theta, theta)
    with pytest.raises(CheckpointError, match='does not fit'):
        s.load({n: {}})
    assert 'resumed' in s.load({n: s.state_dict()})


def test_the_identification_fits_its_own_filtered_states_and_so_keeps_the_inertias():
    """Velocity noise becomes acceleration noise in the regressor, which least squares answers
    with too little inertia (errors in variables). With ``identification_cutoff_hz`` the
    identification fits the states and torques of an estimator of its own, which sees every
    sample: on the simulated UR5 (velocity noise 5 mrad/s, the pipeline's estimator at 60 Hz)
    the identified model's error on unseen, clean motion falls well below the 60 Hz fit's."""
    from invdyn_ros.pipeline.pipeline import Pipeline, make_trainer
    from invdyn_ros.sim.arm import ArmConfig, SimulatedArm
    from invdyn_ros.sim.trajectory import FourierTrajectory

    arm = SimulatedArm(ArmConfig(robot='ur5'))
    rate = 500.0
    t = np.arange(0.0, 30.0, 1.0 / rate)
    q, qd, qdd = FourierTrajectory(6, seed=3, max_velocity=1.0, max_acceleration=4.0).sample(t)
    tau = np.array([arm.rnea(*x) for x in zip(q, qd, qdd)])
    qd_measured = qd + 5e-3 * np.random.default_rng(0).standard_normal(qd.shape)
    qu, qdu, qddu = FourierTrajectory(6, seed=4, max_velocity=1.0,
                                      max_acceleration=4.0).sample(np.arange(0.0, 10.0, 0.01))
    truth = np.array([arm.rnea(*x) for x in zip(qu, qdu, qddu)])

    def identified_error(cutoff: float) -> tuple[float, int]:
        config = PipelineConfig.from_params(dict(
            joint_names=UR5, torque_limits=list(LIMITS), rate_hz=rate, filter_cutoff_hz=60.0,
            prior='rnea', robot_description=find_robot_urdf('ur5').read_text(),
            identification_cutoff_hz=cutoff, model='mlp', hidden_size=4, window=2,
            min_samples=10 ** 6, dual_enabled=False))
        with Pipeline(config, make_trainer(config, 'inline')) as pipe:
            for k in range(len(t)):
                pipe.process(t[k], q[k], qd_measured[k], tau[k])
            prior = pipe.physics.prior
            err = np.array([prior.predict(*x) for x in zip(qu, qdu, qddu)]) - truth
            seen = -1 if pipe.prior.estimator is None else \
                pipe.prior.estimator.counters['accepted']
            return float(np.sqrt(np.mean(err ** 2))), seen

    plain, none_seen = identified_error(0.0)
    own, seen = identified_error(10.0)
    print(f'identified model on unseen motion: RMS error {plain:.4f} N m (60 Hz states), '
          f'{own:.4f} N m (its own 10 Hz estimator)')
    assert none_seen == -1 and seen == len(t)             # every sample, only when asked for
    assert own < 0.6 * plain


def test_without_identification_cutoff_the_identification_fits_the_pipeline_states():
    s = side(prior='rnea', robot_description=find_robot_urdf('ur5').read_text(),
             identification_cutoff_hz=0.0)
    assert s.estimator is None
    s = side(prior='rnea', robot_description=find_robot_urdf('ur5').read_text(),
             filter_cutoff_hz=10.0, identification_cutoff_hz=10.0)
    assert s.estimator is None                  # not below the estimator's cutoff: nothing to gain
    s = side(prior='rnea', robot_description=find_robot_urdf('ur5').read_text(), identify=False)
    assert s.estimator is None
