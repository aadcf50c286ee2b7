"""The learner's checkpoints: exact resume, bad files refused, older formats still load."""
import numpy as np
import pytest
import torch
from test_learner import small_config, smooth_windows

from invdyn_ros.errors import CheckpointError
from invdyn_ros.learning.learner import OnlineLearner
from invdyn_ros.learning.learner_checkpoint import CHECKPOINT_FORMAT_VERSION

torch.set_num_threads(1)


def test_checkpoint_roundtrip_predicts_identically_and_continues(tmp_path):
    W, T = smooth_windows(700, seed=6)
    learner = OnlineLearner(3, small_config())
    learner.learn_many(W[:400], T[:400])
    path = tmp_path / 'ckpt' / 'lstm.pt'
    learner.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ['lstm.pt']   # no temp file left
    raw = torch.load(path, weights_only=True)
    assert raw['format_version'] == CHECKPOINT_FORMAT_VERSION and raw['kind'] == 'lstm'
    resumed = OnlineLearner.load(path, config=small_config(), n_joints=3)
    np.testing.assert_array_equal(resumed.predict_many(W[:50]), learner.predict_many(W[:50]))
    s0, s1 = learner.stats(), resumed.stats()
    for key in ('samples', 'steps', 'lr', 'buffer', 'recent_nmse', 'loss', 'rollbacks'):
        assert s0[key] == s1[key], key
    opt0, opt1 = learner.optimizer.state_dict(), resumed.optimizer.state_dict()
    for i, st in opt0['state'].items():
        torch.testing.assert_close(st['exp_avg_sq'], opt1['state'][i]['exp_avg_sq'])
        assert float(st['step']) == float(opt1['state'][i]['step'])
    # both continue on the same stream to the same weights (buffer, rng and Adam state restored)
    learner.learn_many(W[400:], T[400:])
    resumed.learn_many(W[400:], T[400:])
    assert resumed.steps == learner.steps > s0['steps']
    np.testing.assert_allclose(resumed.predict_many(W[:50]), learner.predict_many(W[:50]),
                               atol=1e-5)


def test_sign_features_are_part_of_the_checkpointed_model(tmp_path):
    """A learner with velocity sign features resumes with them; a config without them (or with
    another gain) refuses the checkpoint instead of loading weights of another input width."""
    W, T = smooth_windows(300, seed=2)
    options = {'hidden_size': 16, 'num_layers': 1, 'velocity_sign_gain': 20.0}
    learner = OnlineLearner(3, small_config(model_options=options))
    learner.learn_many(W, T)
    learner.save(tmp_path / 'sign.pt')
    resumed = OnlineLearner.load(tmp_path / 'sign.pt', config=small_config(model_options=options))
    assert resumed.model.config.velocity_sign_gain == 20.0
    np.testing.assert_array_equal(resumed.predict_many(W[:20]), learner.predict_many(W[:20]))
    for other in ({'hidden_size': 16, 'num_layers': 1},
                  {'hidden_size': 16, 'num_layers': 1, 'velocity_sign_gain': 10.0}):
        with pytest.raises(CheckpointError, match='model options'):
            OnlineLearner.load(tmp_path / 'sign.pt', config=small_config(model_options=other))


def test_checkpoint_without_buffer_and_with_new_training_params(tmp_path):
    W, T = smooth_windows(200)
    learner = OnlineLearner(3, small_config())
    learner.learn_many(W, T)
    learner.save(tmp_path / 'a.pt', include_buffer=False)
    resumed = OnlineLearner.load(tmp_path / 'a.pt', config=small_config(updates_per_sample=1.0,
                                                                        buffer_capacity=900))
    assert len(resumed.buffer) == 0 and resumed.steps == learner.steps
    assert resumed.config.updates_per_sample == 1.0
    np.testing.assert_array_equal(resumed.predict_many(W[:5]), learner.predict_many(W[:5]))


def test_bad_checkpoints_raise_checkpoint_error(tmp_path):
    W, T = smooth_windows(100)
    learner = OnlineLearner(3, small_config())
    learner.learn_many(W, T)
    good = tmp_path / 'good.pt'
    learner.save(good)
    data = good.read_bytes()
    with pytest.raises(CheckpointError, match='does not exist'):
        OnlineLearner.load(tmp_path / 'missing.pt')
    (tmp_path / 'trunc.pt').write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError):
        OnlineLearner.load(tmp_path / 'trunc.pt')
    (tmp_path / 'garbage.pt').write_bytes(b'this is not a checkpoint' * 10)
    with pytest.raises(CheckpointError):
        OnlineLearner.load(tmp_path / 'garbage.pt')
    (tmp_path / 'empty.pt').write_bytes(b'')
    with pytest.raises(CheckpointError):
        OnlineLearner.load(tmp_path / 'empty.pt')
    ckpt = torch.load(good, weights_only=True)
    torch.save({**ckpt, 'format_version': 999}, tmp_path / 'future.pt')
    with pytest.raises(CheckpointError, match='format_version'):
        OnlineLearner.load(tmp_path / 'future.pt')
    torch.save([1, 2, 3], tmp_path / 'list.pt')
    with pytest.raises(CheckpointError):
        OnlineLearner.load(tmp_path / 'list.pt')
    broken = {**ckpt, 'model': {k: v.clone() for k, v in ckpt['model'].items()}}
    broken['model']['head.bias'][0] = float('nan')
    torch.save(broken, tmp_path / 'nan.pt')
    with pytest.raises(CheckpointError, match='NaN'):
        OnlineLearner.load(tmp_path / 'nan.pt')
    with pytest.raises(CheckpointError, match='joints'):
        OnlineLearner.load(good, n_joints=7)
    with pytest.raises(CheckpointError, match="'lstm'"):
        OnlineLearner.load(good, config=small_config(model='gru'))
    with pytest.raises(CheckpointError, match='options'):
        OnlineLearner.load(good, config=small_config(model_options={'hidden_size': 8,
                                                                     'num_layers': 1}))
    with pytest.raises(CheckpointError, match='window'):
        OnlineLearner.load(good, config=small_config(window=5))


def test_weight_ema_survives_a_checkpoint_and_starts_from_a_plain_one(tmp_path):
    W, T = smooth_windows(400, seed=4)
    learner = OnlineLearner(3, small_config(weight_ema_decay=0.95))
    learner.learn_many(W[:300], T[:300])
    learner.save(tmp_path / 'ema.pt')
    resumed = OnlineLearner.load(tmp_path / 'ema.pt', config=small_config(weight_ema_decay=0.95))
    np.testing.assert_array_equal(resumed.predict_many(W[:30]), learner.predict_many(W[:30]))
    learner.learn_many(W[300:], T[300:])
    resumed.learn_many(W[300:], T[300:])
    np.testing.assert_allclose(resumed.predict_many(W[:30]), learner.predict_many(W[:30]),
                               atol=1e-5)
    # a checkpoint saved without averaging: the average starts at its weights (not at random ones)
    plain = OnlineLearner(3, small_config())
    plain.learn_many(W[:300], T[:300])
    plain.save(tmp_path / 'plain.pt')
    switched = OnlineLearner.load(tmp_path / 'plain.pt',
                                  config=small_config(weight_ema_decay=0.95))
    np.testing.assert_array_equal(switched.predict_many(W[:30]), plain.predict_many(W[:30]))


@pytest.mark.parametrize('n_before', [300, 333, 400])
def test_resumed_learner_continues_exactly_whatever_the_fifo_rotation(tmp_path, n_before):
    """The FIFO is saved oldest first and restored with its head at slot 0; batches are drawn by
    position from the oldest entry, so the resumed learner draws the same windows as the saved
    one would have (before, only a rotation of 0 continued identically: 400 samples with a FIFO
    of 200 did, 300 did not)."""
    W, T = smooth_windows(n_before + 100, seed=4)
    learner = OnlineLearner(3, small_config())
    learner.learn_many(W[:n_before], T[:n_before])
    learner.save(tmp_path / 'a.pt')
    resumed = OnlineLearner.load(tmp_path / 'a.pt', config=small_config())
    learner.learn_many(W[n_before:], T[n_before:])
    resumed.learn_many(W[n_before:], T[n_before:])
    np.testing.assert_allclose(resumed.predict_many(W[:30]), learner.predict_many(W[:30]),
                               atol=1e-6)


def test_checkpoint_keeps_the_prequential_errors_newest_first_for_another_ready_window(tmp_path):
    """recent_nmse survives a checkpoint; a smaller ready_window keeps the newest errors, and a
    checkpoint written before 'squared_errors' (plain 'errors') still loads."""
    W, T = smooth_windows(250, seed=8)
    learner = OnlineLearner(3, small_config())
    learner.learn_many(W, T)
    learner.save(tmp_path / 'a.pt')
    resumed = OnlineLearner.load(tmp_path / 'a.pt', config=small_config())
    assert resumed.recent_nmse == learner.recent_nmse
    small = OnlineLearner.load(tmp_path / 'a.pt', config=small_config(ready_window=30))
    ref = OnlineLearner(3, small_config(ready_window=30))
    ref._recent.push_many(np.sqrt(learner._recent.sq[(learner._recent.pos + np.arange(100)) % 100]
                                  [-30:]))
    ref.out_scaler.load_state_dict(learner.out_scaler.state_dict())
    assert small.recent_nmse == pytest.approx(ref.recent_nmse, rel=1e-12)
    raw = torch.load(tmp_path / 'a.pt', weights_only=True)
    del raw['prequential']['squared_errors']
    torch.save(raw, tmp_path / 'old.pt')
    old = OnlineLearner.from_state_dict(raw, config=small_config())
    assert old.recent_nmse == pytest.approx(learner.recent_nmse, rel=1e-12)
