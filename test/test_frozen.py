"""frozen: a FrozenPipeline predicts as its pipeline did when it was frozen, whatever the pipeline
does afterwards (weights loaded in place, identified parameters, visited region, residual gate,
the identifier's choice), and the copies of predictor, prior and physics stage it is made of."""
from __future__ import annotations

import numpy as np
import torch
from test_residual import LIMITS, UR5, URDF, LabelTrainer, params, recording

from invdyn_ros.pipeline.frozen import FrozenPipeline
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig
from invdyn_ros.pipeline.trajectory_feedforward import annotate_trajectory
from invdyn_ros.sim.arm import ArmConfig, SimulatedArm
from invdyn_ros.sim.trajectory import FourierTrajectory
from invdyn_ros.stages.physics import PhysicsPrior, RobotModel

torch.set_num_threads(1)


def physics_pipeline() -> Pipeline:
    config = PipelineConfig.from_params(params())
    pipe = Pipeline(config, LabelTrainer(config))
    t, q, qd, tau = recording(SimulatedArm(ArmConfig(payload_kg=1.0, friction_eps=0.05)),
                              seconds=3.0)
    for i in range(len(t)):
        pipe.process(t[i], q[i], qd[i], tau[i])
    pipe.physics.gate[:] = 1.0
    return pipe


def annotate(model):
    times = np.linspace(0.5, 3.0, 26)
    q, qd, qdd = FourierTrajectory(6, seed=4, max_amplitude=0.3).sample(times)
    return annotate_trajectory(model, UR5, times, q, qd, qdd,
                               prior=model.physics.prior.predict_many, require_ready=False)


def test_a_frozen_pipeline_keeps_predicting_what_the_pipeline_did_when_frozen():
    pipe = physics_pipeline()
    frozen = FrozenPipeline(pipe)
    before = annotate(pipe)
    assert before.annotated and np.abs(before.efforts).max() > 1.0
    np.testing.assert_array_equal(annotate(frozen).efforts, before.efforts)
    assert not before.outside.all()                   # the networks' part is in it
    # everything the annotation reads changes in the live pipeline, in place where it does so
    prior = pipe.physics.prior
    prior.set_parameters(np.asarray(prior.theta) * 1.3)
    with torch.no_grad():
        for p in pipe.predictors.values():
            for w in p.model.parameters():
                w.add_(0.05)                          # what load_weights' load_state_dict does
    pipe.physics.gate[:] = 0.0
    pipe.physics.region.add(np.full(12, 0.7))
    pipe.identifier._active[:] = 1 - pipe.identifier._active
    after = annotate(pipe)
    assert np.abs(after.efforts - before.efforts).max() > 0.1
    np.testing.assert_array_equal(annotate(frozen).efforts, before.efforts)
    assert frozen.physics.identification is None      # a frozen model does not learn
    pipe.close()


def test_a_frozen_prior_shares_nothing_that_changes():
    prior = PhysicsPrior(RobotModel(URDF, UR5))
    q, qd, qdd = np.random.default_rng(1).normal(size=(3, 4, 6))
    frozen = prior.frozen()
    want = prior.predict_many(q, qd, qdd)
    prior.set_parameters(np.asarray(prior.theta) * 0.5)
    np.testing.assert_array_equal(frozen.predict_many(q, qd, qdd), want)
    assert np.abs(prior.predict_many(q, qd, qdd) - want).max() > 1.0
    assert np.isfinite(want).all() and np.all(np.abs(np.asarray(LIMITS)) > 0)
