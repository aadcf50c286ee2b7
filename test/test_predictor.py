"""Predictor: streaming push() equals predict(last L rows); weights load safely."""
import numpy as np
import pytest
import torch

from invdyn_ros.errors import CheckpointError
from invdyn_ros.learning.learner import LearnerConfig, OnlineLearner
from invdyn_ros.learning.predictor import Predictor

torch.set_num_threads(1)

N_JOINTS, WINDOW = 7, 10
OPTIONS = {
    'lstm': {'hidden_size': 64, 'num_layers': 2},
    'gru': {'hidden_size': 64, 'num_layers': 2},
    'mlp': {'hidden_size': 64},
    'va_sta_reslstm': {'hidden_size': 16, 'num_layers': 2, 'attention_size': 8},
}


def _rows(k: int, seed: int = 0) -> np.ndarray:
    """Raw feature rows with non-trivial offsets and scales (so scaling matters)."""
    rng = np.random.default_rng(seed)
    offset = rng.uniform(-3, 3, 3 * N_JOINTS)
    scale = rng.uniform(0.1, 5, 3 * N_JOINTS)
    return offset + scale * np.cumsum(rng.normal(0, 0.3, (k, 3 * N_JOINTS)), axis=0) / 5


def _weights(kind: str, seed: int = 0, steps: int = 3) -> dict:
    """Exported weights of a learner that has fitted scalers and taken a few Adam steps."""
    cfg = LearnerConfig(model=kind, model_options=OPTIONS[kind], window=WINDOW, batch_size=16,
                        min_samples=16, updates_per_sample=0.0, seed=seed, learning_rate=1e-2)
    learner = OnlineLearner(N_JOINTS, cfg)
    rows = _rows(200, seed)
    W = np.lib.stride_tricks.sliding_window_view(rows, WINDOW, axis=0).transpose(0, 2, 1)
    T = np.random.default_rng(seed).normal(5, 20, (len(W), N_JOINTS))
    learner.learn_many(W, T)
    for _ in range(steps):
        learner.step()
    return learner.export_weights(), learner


@pytest.mark.parametrize('kind', ['lstm', 'gru', 'mlp', 'va_sta_reslstm'])
def test_stream_equals_window_prediction(kind):
    weights, learner = _weights(kind)
    pred = Predictor(kind, N_JOINTS, OPTIONS[kind], WINDOW)
    pred.load_weights(weights)
    assert pred.version == 1
    rows = _rows(80, seed=1)
    for k, row in enumerate(rows):
        out = pred.push(row)
        if k < WINDOW - 1:
            assert out is None
            continue
        window = rows[k - WINDOW + 1:k + 1]
        ref = pred.predict(window)
        assert out.shape == (N_JOINTS,) and out.dtype == np.float64
        np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-6)
        if k % 10 == 0:   # and the predictor is the learner's model, scaling included
            np.testing.assert_allclose(ref, learner.predict_one(window), atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize('kind', ['lstm', 'gru'])
def test_single_layer_and_short_windows(kind):
    opts = {'hidden_size': 8, 'num_layers': 1}
    for window in (1, 3):
        pred = Predictor(kind, 2, opts, window)
        rows = np.random.default_rng(window).normal(size=(20, 6))
        for k, row in enumerate(rows):
            out = pred.push(row)
            if k >= window - 1:
                np.testing.assert_allclose(out, pred.predict(rows[k - window + 1:k + 1]),
                                           atol=1e-5)


@pytest.mark.parametrize('kind', ['lstm', 'gru'])
@pytest.mark.parametrize('window', [1, 2, WINDOW])
def test_deferred_push_returns_the_same_output_and_completes_later(kind, window):
    """push(defer=True) publishes the read-out chain only; complete() (or the next push) advances
    the rest. Outputs are bit-identical to immediate pushes, and equal the windowed forward."""
    weights, _ = _weights(kind)
    immediate = Predictor(kind, N_JOINTS, OPTIONS[kind], window)
    deferred = Predictor(kind, N_JOINTS, OPTIONS[kind], window)
    immediate.load_weights(weights)   # (the model does not depend on the window length)
    deferred.load_weights(weights)
    rows = _rows(40, seed=3)
    for k, row in enumerate(rows):
        a = immediate.push(row)
        b = deferred.push(row, defer=True)
        if k % 3 == 0:                # sometimes completed explicitly, else by the next push
            deferred.complete()
            deferred.complete()       # a second complete() is a no-op
        if k < window - 1:
            assert a is None and b is None
            continue
        assert np.array_equal(a, b)
        np.testing.assert_allclose(b, deferred.predict(rows[k - window + 1:k + 1]),
                                   atol=1e-5, rtol=1e-6)


def test_new_weights_while_a_push_is_deferred():
    """load_weights rebuilds the chains from the raw rows, the deferred one included."""
    w1, _ = _weights('lstm', seed=0)
    w2, _ = _weights('lstm', seed=1, steps=10)
    pred = Predictor('lstm', N_JOINTS, OPTIONS['lstm'], WINDOW)
    pred.load_weights(w1)
    rows = _rows(30, seed=4)
    for row in rows[:20]:
        pred.push(row, defer=True)
    pred.load_weights(w2)
    pred.complete()                   # nothing left to complete: must not advance twice
    out = pred.push(rows[20], defer=True)
    np.testing.assert_allclose(out, pred.predict(rows[11:21]), atol=1e-5)


def test_new_weights_apply_to_the_stream_immediately():
    w1, _ = _weights('lstm', seed=0)
    w2, _ = _weights('lstm', seed=1, steps=10)
    pred = Predictor('lstm', N_JOINTS, OPTIONS['lstm'], WINDOW)
    pred.load_weights(w1)
    rows = _rows(40, seed=2)
    for row in rows[:25]:
        pred.push(row)
    pred.load_weights(w2)          # mid-stream: the chains are rebuilt from the kept raw rows
    assert pred.version == 2
    out = pred.push(rows[25])
    np.testing.assert_allclose(out, pred.predict(rows[16:26]), atol=1e-5)
    fresh = Predictor('lstm', N_JOINTS, OPTIONS['lstm'], WINDOW)
    fresh.load_weights(w2)
    np.testing.assert_allclose(out, fresh.predict(rows[16:26]), atol=1e-5)



@pytest.mark.parametrize('kind', ['lstm', 'gru'])
def test_prepared_readout_never_goes_stale(kind):
    """complete() prepares the next read-out's recurrent part; new weights, a bad row (stream
    reset) or an immediate push in between must not let an old preparation be used."""
    w1, _ = _weights(kind, seed=0)
    w2, _ = _weights(kind, seed=1, steps=10)
    pred = Predictor(kind, N_JOINTS, OPTIONS[kind], WINDOW)
    pred.load_weights(w1)
    rows = _rows(120, seed=5)
    rng = np.random.default_rng(0)
    since_reset, checked = [], 0
    for k, row in enumerate(rows):
        event = rng.integers(8)
        if event == 0:
            pred.load_weights(w2 if pred.version % 2 else w1)
        elif event == 1 and k > 30:
            assert pred.push(np.full(3 * N_JOINTS, np.nan), defer=True) is None
            since_reset = []
        out = pred.push(row, defer=bool(rng.integers(2)))
        since_reset.append(row)
        if rng.integers(2):
            pred.complete()
        if len(since_reset) >= WINDOW:
            np.testing.assert_allclose(out, pred.predict(np.array(since_reset[-WINDOW:])),
                                       atol=1e-5, rtol=1e-6)
            checked += 1
        else:
            assert out is None
    assert checked > 60
    # the exact coincidence: L-1 rows prepare the read-out at k = L-1, then a reset and L-1
    # rows without a read-out bring the stream back to k = L-1 with other chains
    pred.push(np.full(3 * N_JOINTS, np.nan))
    for row in rows[:WINDOW - 1]:
        assert pred.push(row, defer=True) is None
    pred.complete()
    pred.push(np.full(3 * N_JOINTS, np.nan))
    for row in rows[50:50 + WINDOW - 1]:
        assert pred.push(row) is None
    out = pred.push(rows[50 + WINDOW - 1])
    np.testing.assert_allclose(out, pred.predict(rows[50:50 + WINDOW]), atol=1e-5, rtol=1e-6)
def test_bad_rows_reset_the_stream_and_are_counted():
    pred = Predictor('gru', 2, {'hidden_size': 8, 'num_layers': 1}, 4)
    rows = np.random.default_rng(0).normal(size=(20, 6))
    outs = [pred.push(row) for row in rows[:7]]
    assert outs[:3] == [None, None, None] and all(o is not None for o in outs[3:])
    bad = rows[7].copy()
    bad[2] = np.nan
    assert pred.push(bad) is None
    assert pred.push(rows[:2]) is None        # wrong shape
    assert pred.push('x') is None
    assert pred.counters['rejected_rows'] == 3
    outs = [pred.push(r) for r in rows[8:12]]
    assert outs[:3] == [None, None, None]     # a fresh window must fill again
    np.testing.assert_allclose(outs[3], pred.predict(rows[8:12]), atol=1e-5)
    pred.reset_stream()
    assert pred.push(rows[0]) is None
    with pytest.raises(ValueError):
        pred.predict(np.full((4, 6), np.nan))


def test_extreme_rows_are_clipped_like_in_training():
    weights, learner = _weights('lstm')
    pred = Predictor('lstm', N_JOINTS, OPTIONS['lstm'], WINDOW)
    pred.load_weights(weights)
    rows = _rows(12, seed=3)
    rows[-1] *= 1e12                           # absurd, but finite: clipped to ±input_clip std
    for row in rows:
        out = pred.push(row)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, pred.predict(rows[-WINDOW:]), atol=1e-5)
    np.testing.assert_allclose(out, learner.predict_one(rows[-WINDOW:]), atol=1e-4)


def test_invalid_weights_are_refused_and_old_weights_kept():
    weights, _ = _weights('lstm')
    pred = Predictor('lstm', N_JOINTS, OPTIONS['lstm'], WINDOW)
    pred.load_weights(weights)
    window = _rows(WINDOW, seed=4)
    before = pred.predict(window)
    nan_w = {**weights, 'model': {k: v.clone() for k, v in weights['model'].items()}}
    nan_w['model']['head.weight'][0, 0] = float('inf')
    with pytest.raises(CheckpointError, match='NaN/Inf'):
        pred.load_weights(nan_w)
    gru_w, _ = _weights('gru')
    with pytest.raises(CheckpointError, match='gru'):
        pred.load_weights(gru_w)
    small = Predictor('lstm', N_JOINTS, {'hidden_size': 8, 'num_layers': 2}, WINDOW)
    with pytest.raises(CheckpointError):
        small.load_weights(weights)
    missing = {**weights, 'model': {k: v for k, v in weights['model'].items() if k != 'head.bias'}}
    missing.pop('model_config')
    with pytest.raises(CheckpointError):
        pred.load_weights(missing)
    with pytest.raises(CheckpointError):
        pred.load_weights({'model': weights['model']})   # no scalers
    assert pred.version == 1
    np.testing.assert_array_equal(pred.predict(window), before)


@pytest.mark.parametrize('kind', ['lstm', 'gru'])
def test_stream_with_velocity_sign_features_equals_window_prediction(kind):
    """The streaming read-out computes the sign features like the model's forward does."""
    options = dict(OPTIONS[kind], velocity_sign_gain=20.0)
    cfg = LearnerConfig(model=kind, model_options=options, window=WINDOW, batch_size=16,
                        min_samples=16, updates_per_sample=0.0, seed=0, learning_rate=1e-2)
    learner = OnlineLearner(N_JOINTS, cfg)
    rows = _rows(200, seed=6)
    W = np.lib.stride_tricks.sliding_window_view(rows, WINDOW, axis=0).transpose(0, 2, 1)
    learner.learn_many(W, np.random.default_rng(0).normal(5, 20, (len(W), N_JOINTS)))
    for _ in range(3):
        learner.step()
    pred = Predictor(kind, N_JOINTS, options, WINDOW)
    pred.load_weights(learner.export_weights())
    assert pred.input_features == 4 * N_JOINTS
    plain = Predictor(kind, N_JOINTS, OPTIONS[kind], WINDOW)
    with pytest.raises(CheckpointError, match='model config'):
        plain.load_weights(learner.export_weights())
    for k, row in enumerate(rows[:60]):
        out = pred.push(row, defer=bool(k % 2))
        if k >= WINDOW - 1:
            np.testing.assert_allclose(out, pred.predict(rows[k - WINDOW + 1:k + 1]),
                                       atol=1e-5, rtol=1e-6)
            np.testing.assert_allclose(out, learner.predict_one(rows[k - WINDOW + 1:k + 1]),
                                       atol=1e-4, rtol=1e-5)
