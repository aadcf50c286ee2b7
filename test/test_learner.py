"""OnlineLearner: known answers on generated data (no wall-clock asserts).

The helpers here (``smooth_stream``, ``smooth_windows``, ``small_config``) are shared by
test_learner_config, test_learner_checkpoint, test_trainers and test_training."""
import math

import numpy as np
import pytest
import torch

from invdyn_ros.learning.learner import LearnerConfig, OnlineLearner

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




def test_the_parts_are_importable_from_learner():
    from invdyn_ros.learning import learner, learner_checkpoint, learner_config, replay_buffer

    assert learner.LearnerConfig is learner_config.LearnerConfig
    assert learner.ReplayBuffer is replay_buffer.ReplayBuffer
    for name in ('CHECKPOINT_FORMAT_VERSION', 'load_checkpoint_dict', 'atomic_torch_save'):
        assert getattr(learner, name) is getattr(learner_checkpoint, name), name
    for name in learner.__all__:
        assert hasattr(learner, name), name
