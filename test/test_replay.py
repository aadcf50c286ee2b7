"""replay: the batch form of the pipeline from the stages' many-sample forms.

That a whole replay gives ``Pipeline.process``'s outputs (gaps, rejected samples, dual and single
network, continuing a stream) is tested in test_pipeline (``process_batch`` / ``process_arrays``)
and, with the physics prior, in test_residual; here: the network stage's batch form and the
guarantees of ``replay`` itself.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from invdyn_ros.learning.learner import LearnerConfig, OnlineLearner
from invdyn_ros.learning.predictor import Predictor
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig
from invdyn_ros.pipeline.replay import predict_segments, predict_windows

torch.set_num_threads(1)
N_J, L = 2, 4


def _predictor(seed: int = 0) -> Predictor:
    torch.manual_seed(seed)
    cfg = LearnerConfig(model='lstm', model_options={'hidden_size': 8, 'num_layers': 1},
                        window=L, seed=seed)
    learner = OnlineLearner(N_J, cfg)
    rng = np.random.default_rng(seed)
    learner.fit_scalers(rng.normal(0, 1, (50, L, 3 * N_J)), rng.normal(0, 3, (50, N_J)))
    p = Predictor('lstm', N_J, cfg.model_options, L)
    p.load_weights(learner.export_weights())
    return p


def _streamed(p: Predictor, rows: np.ndarray) -> np.ndarray:
    out = np.full((len(rows), N_J), np.nan)
    for i, row in enumerate(rows):
        y = p.push(row)
        if y is not None:
            out[i] = y
    return out


def test_predict_segments_is_the_streaming_predictor_per_segment():
    """Windows never span a segment boundary; the prefix continues segment 0 only; the first
    L-1 rows of a later segment have no prediction (NaN), like the streaming predictor after a
    reset."""
    rng = np.random.default_rng(1)
    prefix, rows = rng.normal(0, 1, (L - 1, 3 * N_J)), rng.normal(0, 1, (40, 3 * N_J))
    segment = np.repeat([0, 0, 1, 2], [15, 5, 2, 18])
    p = _predictor()
    got = predict_segments({'lstm': p}, rows, segment, prefix, L, chunk=7)['lstm']
    ref = _predictor()
    expected = _streamed(ref, np.concatenate((prefix, rows[:20])))[L - 1:]
    ref.reset_stream()
    expected = np.concatenate((expected, _streamed(ref, rows[20:22])))
    ref.reset_stream()
    expected = np.concatenate((expected, _streamed(ref, rows[22:])))
    assert np.isnan(got[20:22]).all() and np.isnan(got[22:22 + L - 1]).all()
    assert np.isfinite(got[:20]).all() and np.isfinite(got[22 + L - 1:]).all()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # a batch that starts a new stream: no prefix, the first L-1 rows warm up
    fresh = predict_segments({'lstm': p}, rows, np.zeros(40, int), rows[:0], L)['lstm']
    assert np.isnan(fresh[:L - 1]).all() and np.isfinite(fresh[L - 1:]).all()


def test_predict_windows_never_raises_on_values_beyond_float32():
    p = _predictor()
    w = np.zeros((3, L, 3 * N_J))
    w[1, 0, 0] = 1e300                                  # inf after the float32 cast
    with np.errstate(over='ignore'):
        y = predict_windows(p, w)
    assert y.shape == (3, N_J) and np.isfinite(y).all()


def test_replay_learns_nothing_and_leaves_a_fresh_window():
    cfg = PipelineConfig.from_params({'joint_names': ['a', 'b'], 'model': 'mlp', 'window': L,
                                      'hidden_size': 8, 'dual_enabled': False})

    class Trainer:                                      # counts what reaches it
        submitted = polled = 0

        def submit(self, window, tau):
            Trainer.submitted += 1

        def poll(self):
            Trainer.polled += 1

        def stats(self):
            return {}

        def close(self):
            pass

    pipe = Pipeline(cfg, Trainer())
    t = 100.0 + np.arange(200) * 0.01
    q = np.stack([np.sin(t), np.cos(t)], axis=1)
    streamed = [pipe.process(t[k], q[k], None, 3.0 * q[k]) for k in range(60)]
    assert streamed[-1] is not None
    submitted, polls, scored = Trainer.submitted, Trainer.polled, pipe.readiness.scored
    batch = pipe.process_arrays(t[60:], q[60:], None, 3.0 * q[60:])
    assert batch.valid.all() and np.isfinite(batch.torque).all()   # the stream continued
    assert (Trainer.submitted, Trainer.polled) == (submitted, polls)  # nothing to or from it
    assert pipe.readiness.scored == scored + 140
    t2 = t[-1] + 0.01 * np.arange(1, L + 1)          # the stream goes on
    after = [pipe.process(s, [np.sin(s), np.cos(s)], None, [3 * np.sin(s), 3 * np.cos(s)])
             for s in t2]
    assert [o is None for o in after] == [True] * (L - 1) + [False]
    with pytest.raises(ValueError):
        pipe.process_arrays(t, q[:5])
    assert Trainer.submitted == submitted + 1     # process learns again (one full window)
