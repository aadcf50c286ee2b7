"""The physics stage as a member of the checkpoint set: saved with the networks (manifest last,
sha256), resumed exactly, refused when corrupt, kept untouched when the URDF's model size changed,
and absent from older sets that still load."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_residual import LIMITS, RATE, UR5, URDF  # the same simulated UR5 as the stage's tests

from invdyn_ros.errors import CheckpointError
from invdyn_ros.learning.checkpoints import (manifest_path, physics_path, read_manifest,
                                             read_physics, write_set)
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer
from invdyn_ros.sim.arm import ArmConfig, SimulatedArm
from invdyn_ros.sim.trajectory import FourierTrajectory


def params(**kw):
    p = {'joint_names': UR5, 'torque_limits': LIMITS, 'rate_hz': RATE, 'filter_cutoff_hz': 20.0,
         'window': 5, 'hidden_size': 16, 'num_layers': 1, 'min_samples': 64, 'batch_size': 32,
         'updates_per_sample': 0.2, 'ready_min_samples': 100, 'ready_window': 100,
         'dual_window': 100, 'prior': 'rnea', 'robot_description': URDF,
         'identification_regularization': 0.01, 'dual_enabled': False}
    p.update(kw)
    return p


@pytest.fixture(scope='module')
def learned(tmp_path_factory):
    """A pipeline that identified for 6 s of a 2 kg-payload arm, saved; (config, prefix, state)."""
    arm = SimulatedArm(ArmConfig(payload_kg=2.0, friction_eps=0.05))
    config = PipelineConfig.from_params(params())
    pipe = Pipeline(config, make_trainer(config, 'inline'))
    t = np.arange(0.0, 6.0, 1.0 / RATE)
    q, qd, qdd = FourierTrajectory(6, seed=0).sample(t)
    for i in range(len(t)):
        pipe.process(100.0 + t[i], q[i], qd[i], arm.rnea(q[i], qd[i], qdd[i]))
    stage = pipe.physics
    assert stage.identification.counters['solves'] > 0
    # identified: the payload moved theta away from the URDF's nominal values
    assert np.abs(stage.prior.theta - stage.robot.theta0).max() > 1e-3
    prefix = str(tmp_path_factory.mktemp('ckpt') / 'ur5')
    files = pipe.save_checkpoint(prefix + '.pt')
    state = stage.state_dict()
    pipe.close()
    n = len(state['theta'])
    assert files['physics'] == physics_path(prefix, n) and os.path.isfile(files['physics'])
    return config, prefix, state


def fresh_pipeline(config):
    return Pipeline(config, make_trainer(config, 'inline'))


def test_a_new_pipeline_resumes_the_identified_parameters_exactly(learned):
    config, prefix, state = learned
    manifest = read_manifest(prefix)
    n = len(state['theta'])
    assert set(manifest['physics']) == {str(n)} and set(manifest['networks']) == {'lstm'}
    pipe = fresh_pipeline(config)
    assert not np.array_equal(pipe.physics.prior.theta, state['theta'])   # starts nominal
    msg = pipe.resume_physics(prefix + '.pt')
    assert msg is not None and 'resumed' in msg
    got = pipe.physics.state_dict()
    np.testing.assert_array_equal(got['theta'], state['theta'])
    np.testing.assert_array_equal(pipe.physics.prior.theta, state['theta'])
    for key in ('err2', 'err2_comb', 'gate'):
        np.testing.assert_array_equal(got[key], state[key])
    for key in ('points', 'mean', 'm2'):                       # the trust region
        np.testing.assert_array_equal(got['region'][key], state['region'][key])
    assert got['region']['seen'] == state['region']['seen']
    for key in ('A', 'b', 'theta0'):                           # identification statistics
        np.testing.assert_array_equal(got['identification'][key], state['identification'][key])
    # the same state gives the same prediction as the pipeline that learned it
    x = np.linspace(-0.5, 0.5, 6)
    assert np.isfinite(pipe.physics.prior.predict(x, x, x)).all()
    pipe.close()


def test_a_corrupt_physics_member_is_refused_and_left_untouched(learned, tmp_path):
    config, prefix, state = learned
    n = len(state['theta'])
    copy = str(tmp_path / 'ur5')
    for src in (manifest_path(prefix), f'{prefix}.lstm.pt', physics_path(prefix, n)):
        with open(src, 'rb') as f:
            data = f.read()
        with open(src.replace(prefix, copy), 'wb') as f:
            f.write(data)
    target = physics_path(copy, n)
    with open(target, 'r+b') as f:
        f.seek(os.path.getsize(target) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with open(target, 'rb') as f:
        damaged = f.read()
    with pytest.raises(CheckpointError, match='does not match its manifest'):
        read_physics(copy)
    pipe = fresh_pipeline(config)
    with pytest.raises(CheckpointError, match='physics'):
        pipe.resume_physics(copy + '.pt')
    np.testing.assert_array_equal(pipe.physics.prior.theta, pipe.physics.robot.theta0)
    pipe.close()
    with open(target, 'rb') as f:
        assert f.read() == damaged


def test_an_older_set_without_the_physics_member_still_loads(learned, tmp_path):
    config, _, _ = learned
    prefix = str(tmp_path / 'old')
    trainer = make_trainer(config, 'inline')
    trainer.save(prefix, joint_names=UR5)                      # networks only, as before
    trainer.close()
    assert 'physics' not in read_manifest(prefix) and read_physics(prefix) == {}
    pipe = Pipeline(config, make_trainer(config, 'inline', checkpoint=prefix + '.pt'))
    assert pipe.resume_physics(prefix + '.pt') is None
    np.testing.assert_array_equal(pipe.physics.prior.theta, pipe.physics.robot.theta0)
    pipe.close()


def test_another_model_size_starts_fresh_and_its_member_is_kept(learned, tmp_path):
    config, _, state = learned
    n = len(state['theta'])
    prefix = str(tmp_path / 'other')
    trainer = make_trainer(config, 'inline')
    other = {'theta': np.arange(n + 3, dtype=np.float64)}     # a URDF of another model size
    write_set(prefix, {'lstm': trainer._loop.learners['lstm'].state_dict()}, UR5, physics=other)
    trainer.close()
    kept = physics_path(prefix, n + 3)
    with open(kept, 'rb') as f:
        before = f.read()
    pipe = fresh_pipeline(config)
    msg = pipe.resume_physics(prefix + '.pt')
    assert msg.startswith('WARNING') and str(n + 3) in msg and 'fresh' in msg
    np.testing.assert_array_equal(pipe.physics.prior.theta, pipe.physics.robot.theta0)
    pipe.save_checkpoint(prefix)                               # the new size beside the old one
    pipe.close()
    with open(kept, 'rb') as f:
        assert f.read() == before
    with open(manifest_path(prefix)) as f:
        manifest = json.load(f)
    assert set(manifest['physics']) == {str(n), str(n + 3)}
    states = read_physics(prefix)                              # both verified
    np.testing.assert_array_equal(states[n + 3]['theta'], other['theta'])


def test_the_process_trainer_writes_the_physics_member(learned, tmp_path):
    config, prefix, state = learned
    pipe = Pipeline(config, make_trainer(config, 'process', checkpoint=prefix + '.pt'))
    try:
        pipe.resume_physics(prefix + '.pt')
        out = str(tmp_path / 'proc')
        assert pipe.start_checkpoint(out)
        pipe.save_checkpoint_wait(120.0)
        ok, files = pipe.checkpoint_result()
        assert ok, files
    finally:
        pipe.close()
    n = len(state['theta'])
    np.testing.assert_array_equal(read_physics(out)[n]['theta'], state['theta'])
