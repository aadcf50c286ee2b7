"""OnlineLearner and ReplayBuffer: known answers on generated data (no wall-clock asserts)."""
import math

import numpy as np
import pytest
import torch

from invdyn_ros.errors import CheckpointError, ConfigError
from invdyn_ros.learner import (CHECKPOINT_FORMAT_VERSION, LearnerConfig, OnlineLearner,
                                ReplayBuffer)

torch.set_num_threads(1)


# ---------------------------------------------------------------- generated data (shared helper)
def smooth_stream(n_samples: int, n: int = 3, seed: int = 0, dt: float = 0.01, n_sines: int = 4):
    """Random smooth joint trajectories (sums of sines, analytic derivatives) and the known map
    ``tau = 3 sin(q) + 0.5 qd + 0.1 qdd``. Returns features ``(N, 3n)`` = [q, qd, qdd], torques."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) * dt
    q = np.zeros((n_samples, n))
    qd = np.zeros_like(q)
    qdd = np.zeros_like(q)
    for j in range(n):
        for _ in range(n_sines):
            a = rng.uniform(0.2, 0.8)
            w = rng.uniform(0.3, 2.0) * 2 * np.pi / 4
            p = rng.uniform(0, 2 * np.pi)
            q[:, j] += a * np.sin(w * t + p)
            qd[:, j] += a * w * np.cos(w * t + p)
            qdd[:, j] -= a * w * w * np.sin(w * t + p)
    tau = 3 * np.sin(q) + 0.5 * qd + 0.1 * qdd
    return np.hstack([q, qd, qdd]), tau


def smooth_windows(n_samples: int, window: int = 10, n: int = 3, seed: int = 0):
    """Windows ``(N, L, 3n)`` (oldest row first) and labels (the torque of each newest row)."""
    feats, tau = smooth_stream(n_samples + window - 1, n=n, seed=seed)
    windows = np.lib.stride_tricks.sliding_window_view(feats, window, axis=0).transpose(0, 2, 1)
    return np.ascontiguousarray(windows), tau[window - 1:]


def small_config(**kw) -> LearnerConfig:
    base = dict(model='lstm', model_options={'hidden_size': 16, 'num_layers': 1}, window=10,
                batch_size=32, buffer_capacity=600, recent_capacity=200, min_samples=32,
                updates_per_sample=0.25, ready_window=100)
    base.update(kw)
    return LearnerConfig(**base)


# ---------------------------------------------------------------- replay buffer
def _tagged(i: int, L: int = 2, width: int = 3, n: int = 1):
    return np.full((L, width), float(i)), np.full(n, float(i))


def test_buffer_bounded_fifo_newest_and_reservoir_keeps_old():
    buf = ReplayBuffer(capacity=300, recent_capacity=100, window=2, width=3, n_out=1, seed=0)
    total = 20000
    for i in range(total):
        buf.add(*_tagged(i))
        assert len(buf) <= 300
    assert len(buf) == 300
    rx, ry = buf.recent()
    np.testing.assert_array_equal(ry[:, 0], np.arange(total - 100, total))   # exactly the newest
    sx, sy = buf.reservoir()
    tags = sy[:, 0]
    assert len(tags) == 200 and len(np.unique(tags)) == 200
    assert tags.max() < total - 100              # the reservoir only holds evicted windows
    # a uniform sample of 19900 evicted windows: ~200/19900 * 2000 = 20 expected from the first 2000
    assert (tags < 2000).sum() >= 5
    assert tags.min() < 1000
    np.testing.assert_array_equal(sx[:, 0, 0], tags)   # windows stay paired with their labels


def test_buffer_sample_mixes_recent_fraction():
    buf = ReplayBuffer(capacity=1000, recent_capacity=100, window=2, width=3, n_out=1, seed=1)
    for i in range(5000):
        buf.add(*_tagged(i))
    X, Y = buf.sample(200, recent_fraction=0.25)
    assert X.shape == (200, 2, 3) and Y.shape == (200, 1) and X.dtype == np.float32
    assert int((Y[:, 0] >= 4900).sum()) == 50
    np.testing.assert_array_equal(X[:, 0, 0], Y[:, 0])
    # only a FIFO: the whole batch comes from it
    small = ReplayBuffer(capacity=10, recent_capacity=10, window=2, width=3, n_out=1)
    small.add(*_tagged(7))
    assert set(small.sample(8, 0.0)[1][:, 0]) == {7.0}
    with pytest.raises(ValueError):
        ReplayBuffer(10, 5, 2, 3, 1).sample(4)


def test_buffer_state_roundtrip_and_resize():
    buf = ReplayBuffer(capacity=50, recent_capacity=20, window=2, width=3, n_out=1, seed=3)
    for i in range(500):
        buf.add(*_tagged(i))
    same = ReplayBuffer(capacity=50, recent_capacity=20, window=2, width=3, n_out=1, seed=99)
    same.load_state_dict(buf.state_dict())
    np.testing.assert_array_equal(same.recent()[1], buf.recent()[1])
    np.testing.assert_array_equal(same.reservoir()[1], buf.reservoir()[1])
    np.testing.assert_array_equal(same.sample(16)[1], buf.sample(16)[1])   # rng state restored
    smaller = ReplayBuffer(capacity=30, recent_capacity=10, window=2, width=3, n_out=1)
    smaller.load_state_dict(buf.state_dict())
    assert len(smaller) == 30
    np.testing.assert_array_equal(smaller.recent()[1][:, 0], np.arange(490, 500))


# ---------------------------------------------------------------- learning
def test_prequential_error_falls_on_known_map():
    """The headline behaviour: online learning of a smooth known map from a random trajectory."""
    W, T = smooth_windows(4000, seed=0)
    cfg = LearnerConfig(model='lstm', model_options={'hidden_size': 32, 'num_layers': 1},
                        batch_size=64, updates_per_sample=0.5, learning_rate=3e-3, min_samples=64,
                        ready_window=500, ready_nmse=0.1, seed=0)
    learner = OnlineLearner(3, cfg)
    learner.learn_many(W[:500], T[:500])
    early = learner.recent_nmse
    assert not learner.ready
    learner.learn_many(W[500:], T[500:])
    late = learner.recent_nmse
    assert early > 0.3
    assert late < 0.1, (early, late)
    assert late < early / 4
    assert learner.ready
    s = learner.stats()
    assert s['samples'] == 4000 and s['steps'] > 1500 and s['rollbacks'] == 0
    assert math.isfinite(s['loss']) and s['buffer'] == 4000
    # and the fit generalises to a trajectory it has never seen
    W2, T2 = smooth_windows(600, seed=5)
    err = learner.predict_many(W2) - T2
    assert np.mean(err ** 2 / T.var(axis=0)) < 0.2


def test_same_seed_same_model():
    W, T = smooth_windows(300, seed=1)
    a, b = OnlineLearner(3, small_config(seed=4)), OnlineLearner(3, small_config(seed=4))
    for w, t in zip(W, T):
        a.learn_one(w, t)
        b.learn_one(w, t)
    assert a.steps == b.steps > 0
    np.testing.assert_array_equal(a.predict_many(W[:20]), b.predict_many(W[:20]))
    c = OnlineLearner(3, small_config(seed=5))
    assert not np.allclose(c.predict_many(W[:5]), OnlineLearner(3, small_config(seed=4))
                           .predict_many(W[:5]))


def test_non_finite_and_malformed_samples_are_rejected_and_counted():
    learner = OnlineLearner(3, small_config())
    W, T = smooth_windows(50)
    bad_w = W[0].copy()
    bad_w[3, 2] = np.nan
    assert learner.learn_one(bad_w, T[0]) is False
    assert learner.learn_one(W[0], [np.inf, 0.0, 0.0]) is False
    assert learner.learn_one(W[0][:5], T[0]) is False          # wrong window length
    assert learner.learn_one(W[0], T[0][:2]) is False          # wrong joint count
    assert learner.learn_one('garbage', None) is False
    assert learner.learn_many(W[:3], T[:2]) == 0               # mismatched lengths
    assert learner.learn_one(W[0] * 1e300, T[0]) is False       # finite, but Inf in float32
    s = learner.stats()
    assert s['rejected_nonfinite'] == 2 and s['rejected_shape'] == 4
    assert s['rejected_magnitude'] == 1
    assert s['samples'] == 0 and s['buffer'] == 0
    assert learner.in_scaler.count == 0                        # the scalers were not poisoned
    mixed_w = W[:10].copy()
    mixed_w[4, 0, 0] = np.nan
    assert learner.learn_many(mixed_w, T[:10]) == 9
    assert learner.stats()['samples'] == 9
    assert np.isfinite(learner.predict_one(W[0])).all()
    with pytest.raises(ValueError):
        learner.predict_one(bad_w)                             # no silent NaN torque


def test_divergence_nan_weight_rolls_back_and_continues():
    W, T = smooth_windows(400, seed=2)
    learner = OnlineLearner(3, small_config(snapshot_every=5))
    learner.learn_many(W[:300], T[:300])
    assert learner.steps > 20
    good_state, _ = learner._snapshot
    lr_before = learner.lr
    with torch.no_grad():
        learner.model.rnn.weight_hh_l0[0, 0] = float('nan')   # a corrupted weight
    assert learner.step() is None
    assert learner.rollbacks == 1
    assert learner.stats()['divergence_nonfinite'] == 1
    assert learner.lr == pytest.approx(lr_before / 2)
    for k, v in learner.model.state_dict().items():
        torch.testing.assert_close(v, good_state[k])
        assert torch.isfinite(v).all()
    steps = learner.steps
    learner.learn_many(W[300:], T[300:])
    assert learner.steps > steps and learner.rollbacks == 1
    assert math.isfinite(learner.stats()['loss'])
    assert np.isfinite(learner.predict_many(W[:10])).all()


def test_divergence_loss_spike_rolls_back_to_last_good_weights():
    W, T = smooth_windows(400, seed=3)
    learner = OnlineLearner(3, small_config(snapshot_every=1))
    learner.learn_many(W[:300], T[:300])
    good_state, _ = learner._snapshot
    with torch.no_grad():
        learner.model.head.weight.mul_(1000.0)   # finite but absurd: loss >> 20 x median
    assert learner.step() is None
    assert learner.stats()['divergence_spike'] == 1 and learner.rollbacks == 1
    for k, v in learner.model.state_dict().items():
        torch.testing.assert_close(v, good_state[k])


def test_hard_new_data_is_not_mistaken_for_divergence():
    """A jump in the loss caused by new motions (the snapshot is just as bad) must be learned."""
    W, T = smooth_windows(900, seed=4)
    learner = OnlineLearner(3, small_config(recent_fraction=1.0, updates_per_sample=1.0,
                                            plateau_patience=5, learning_rate=3e-3))
    learner.learn_many(W[:400], T[:400])
    for g in learner.optimizer.param_groups:   # as if the plateau schedule had decayed it fully
        g['lr'] = learner.config.min_learning_rate
    restarts = learner.stats()['lr_restarts']
    shifted = T[400:] + 40.0            # a new payload: every torque shifts far outside the old range
    before = learner.predict_many(W[-50:]) - shifted[-50:]
    learner.learn_many(W[400:], shifted)
    s = learner.stats()
    assert s['accepted_spikes'] >= 1
    assert s['rollbacks'] == 0
    assert s['lr_restarts'] > restarts  # new motions are learned at the full rate again
    err = learner.predict_many(W[-50:]) - shifted[-50:]
    # it moved towards the new torques: from ~40 N m off to a fraction of that. (How far it gets
    # in these 500 steps depends on the batches drawn: 0.6-18 N m over six seeds.)
    assert np.sqrt(np.mean(err ** 2)) < 0.5 * np.sqrt(np.mean(before ** 2))


def test_ready_needs_min_samples():
    W, T = smooth_windows(100)
    learner = OnlineLearner(3, small_config(min_samples=1000, ready_nmse=1e9))
    learner.learn_many(W, T)
    assert learner.recent_nmse < 1e9 and not learner.ready
    assert OnlineLearner(3, small_config()).stats()['recent_nmse'] is None


# ---------------------------------------------------------------- checkpoints
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


# ---------------------------------------------------------------- config
@pytest.mark.parametrize('kw,name', [
    (dict(model='transformer'), 'model'), (dict(window=0), 'window'),
    (dict(recent_capacity=30000), 'recent_capacity'), (dict(learning_rate=-1.0), 'learning_rate'),
    (dict(learning_rate=float('nan')), 'learning_rate'), (dict(recent_fraction=1.5), 'recent_fraction'),
    (dict(plateau_factor=1.0), 'plateau_factor'), (dict(divergence_factor=0.5), 'divergence_factor'),
    (dict(model_options={'bogus': 1}), 'bogus'), (dict(batch_size=True), 'batch_size'),
    (dict(lr_restart_factor=0.5), 'lr_restart_factor'),
])
def test_config_validation_names_the_parameter(kw, name):
    with pytest.raises(ConfigError, match=name):
        LearnerConfig(**kw).validate()


def test_config_dict_roundtrip():
    cfg = small_config(seed=7)
    assert LearnerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match='nonsense'):
        LearnerConfig.from_dict({**cfg.to_dict(), 'nonsense': 1})


# ---------------------------------------------------------------- weight averaging
def _iterate_predictions(learner: OnlineLearner, W: np.ndarray) -> np.ndarray:
    """What the last Adam iterate (not the average) predicts."""
    model = learner.model
    model.eval()
    with torch.no_grad():
        x = learner._scale_inputs(torch.as_tensor(np.asarray(W, dtype=np.float32)))
        y = learner.out_scaler.inverse_transform(model(x)).double().numpy()
    model.train()
    return y


def test_weight_ema_predicts_with_the_exponential_average_of_the_iterates():
    """Predictions and exported weights come from the EMA of the weights after every good step:
    p_avg <- decay p_avg + (1 - decay) p_new, starting from the first iterate."""
    W, T = smooth_windows(300, seed=3)
    decay = 0.9
    learner = OnlineLearner(3, small_config(weight_ema_decay=decay, updates_per_sample=0.5))
    shadow = None
    steps = 0
    for w, t in zip(W, T):
        learner.learn_one(w, t)
        while steps < learner.good_steps:        # follow every good step with our own EMA
            steps += 1
            now = {k: v.detach().clone() for k, v in learner.model.state_dict().items()}
            shadow = now if shadow is None else {k: decay * shadow[k] + (1 - decay) * now[k]
                                                 for k in now}
    assert learner.good_steps > 20 and learner.rollbacks == 0
    exported = learner.export_weights()['model']
    for k, v in shadow.items():
        torch.testing.assert_close(exported[k], v, rtol=1e-5, atol=1e-6)
    avg = learner.predict_many(W[:40])
    assert np.abs(avg - _iterate_predictions(learner, W[:40])).max() > 1e-4   # not the iterate
    off = OnlineLearner(3, small_config(updates_per_sample=0.5))
    off.learn_many(W, T)
    np.testing.assert_allclose(off.predict_many(W[:40]), _iterate_predictions(off, W[:40]),
                               atol=1e-6)                                  # default: the iterate


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


@pytest.mark.parametrize('bad', [1.0, -0.1, float('nan'), 'high'])
def test_weight_ema_decay_is_validated(bad):
    with pytest.raises(ConfigError, match='weight_ema_decay'):
        small_config(weight_ema_decay=bad).validate()


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
