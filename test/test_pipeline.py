"""Pipeline: parameters, the per-sample chain, readiness, clamping, references (checkpoints:
test_pipeline_learning).

Known answers come from two sources: a fixed-weights MLP whose output is exactly its target
scaler's mean (head weights zero), so errors and nMSE are computable by hand for constant inputs
(the estimator passes a constant exactly: it starts at the steady state); and a generated stream
with a smooth analytic torque function for the learning behaviour.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from invdyn_ros.errors import ConfigError
from invdyn_ros.learning.learner import LearnerConfig, OnlineLearner
from invdyn_ros.pipeline.pipeline import (NODE_ONLY_PARAMETERS, Output, Pipeline, PipelineConfig,
                                          Published, ThreadTrainer, make_trainer)

torch.set_num_threads(1)
NAMES = ['j1', 'j2']


# ----------------------------------------------------------------------------------- helpers
def generated_stream(n: int = 2, count: int = 1200, rate: float = 100.0, seed: int = 0):
    """(t, q, qd, tau): sums of sines, tau = a sin(q) + b qd + c qdd (a known smooth function)."""
    rng = np.random.default_rng(seed)
    t = np.arange(count) / rate
    w = rng.uniform(0.3, 0.9, size=(2, n)) * 2 * np.pi
    ph = rng.uniform(0, 2 * np.pi, size=(2, n))
    q = 0.7 * np.sin(t[:, None] * w[0] + ph[0]) + 0.3 * np.sin(t[:, None] * w[1] + ph[1])
    qd = 0.7 * w[0] * np.cos(t[:, None] * w[0] + ph[0]) \
        + 0.3 * w[1] * np.cos(t[:, None] * w[1] + ph[1])
    qdd = -0.7 * w[0] ** 2 * np.sin(t[:, None] * w[0] + ph[0]) \
        - 0.3 * w[1] ** 2 * np.sin(t[:, None] * w[1] + ph[1])
    tau = 5.0 * np.sin(q) + 1.0 * qd + 0.2 * qdd
    return t + 100.0, q, qd, tau


class FixedTrainer:
    """A trainer that never learns: hands out one set of weights and counts what it is given."""

    def __init__(self, weights: dict, name: str = 'mlp') -> None:
        self._weights = {name: weights}
        self.submitted = 0
        self.counters = {'submitted': 0}
        self.save_delay_s = 0.0
        self.save_gate = None       # a threading.Event: save() waits until the test sets it

    def submit(self, window, tau) -> None:
        self.submitted += 1

    def poll(self):
        w, self._weights = self._weights, None
        return w

    def stats(self) -> dict:
        return {}

    def save(self, prefix, **options):
        if self.save_gate is not None:
            assert self.save_gate.wait(120.0), 'the test never released the save'
        time.sleep(self.save_delay_s)
        return {}

    def close(self) -> None:
        pass


def constant_mlp_weights(mean, std, window: int = 3) -> dict:
    """MLP weights whose prediction is exactly ``mean`` (head zero), target scaler std ``std``."""
    n = len(mean)
    learner = OnlineLearner(n, LearnerConfig(model='mlp', model_options={'hidden_size': 8},
                                             window=window))
    with torch.no_grad():
        learner.model.head.weight.zero_()
        learner.model.head.bias.zero_()
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    learner.out_scaler.partial_fit(np.stack([mean - std, mean + std]))   # population std = std
    return learner.export_weights()


def mlp_config(**overrides) -> PipelineConfig:
    params = {'joint_names': NAMES, 'model': 'mlp', 'hidden_size': 8, 'window': 3,
              'dual_enabled': False, 'rate_hz': 100.0, 'ready_window': 50,
              'ready_min_samples': 100, 'ready_nmse': 0.1}
    params.update(overrides)
    return PipelineConfig.from_params(params)


def feed_constant(pipe: Pipeline, count: int, q, tau, t0: float = 10.0, rate: float = 100.0):
    outs = []
    for i in range(count):
        outs.append(pipe.process(t0 + i / rate, q, np.zeros(len(q)), tau))
    return outs


# ----------------------------------------------------------------------------------- config
def test_from_params_defaults_accepts_node_parameters_and_rejects_typos():
    cfg = PipelineConfig.from_params({'joint_names': NAMES})
    assert cfg.joint_names == tuple(NAMES)
    assert cfg.learner.model == 'lstm' and cfg.learner.batch_size == 128
    assert cfg.network_names == ('lstm', 'gru') and cfg.dual_enabled
    assert cfg.filter.rate_hz is None and cfg.torque_limits is None
    # one YAML file serves node and evaluator: node-only names are accepted
    cfg = PipelineConfig.from_params({'joint_names': NAMES, **NODE_ONLY_PARAMETERS,
                                      'torque_limits': [1, 2], 'filter_cutoff_hz': 10})
    assert cfg.torque_limits == (1.0, 2.0) and cfg.filter.cutoff_hz == 10.0
    with pytest.raises(ConfigError, match='learning_rte'):
        PipelineConfig.from_params({'joint_names': NAMES, 'learning_rte': 0.1})


@pytest.mark.parametrize('name, value', [
    ('joint_names', []),
    ('joint_names', ['a', 'a']),
    ('model', 'transformer'),
    ('second_model', 'rnn'),
    ('window', 0),
    ('window', 2.5),
    ('batch_size', -1),
    ('learning_rate', 'fast'),
    ('learning_rate', 0.0),
    ('filter_order', 0),
    ('filter_cutoff_hz', -1.0),
    ('dual_hysteresis', 1.5),
    ('dual_window', 1),
    ('ready_nmse', 0.0),
    ('torque_limits', [1.0]),
    ('torque_limits', [1.0, -2.0]),
    ('torque_limits', [1.0, float('nan')]),
    ('effort_scale', [1.0, 0.0]),
    ('dual_enabled', 'yes'),
    ('poll_every', 0),
    ('recent_fraction', 1.5),
    ('recent_fraction', 'all'),
    ('min_learning_rate', -1e-4),
    ('second_hidden_size', -1),
    ('weight_ema_decay', 1.0),
    ('effort_label', 'raw'),
    ('effort_label', 3),
    ('velocity_sign_gain', -1.0),
    ('velocity_sign_gain', 'on'),
])
def test_invalid_values_name_the_parameter(name, value):
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_params({'joint_names': NAMES, name: value})
    assert name in str(info.value)


def test_lifelong_learning_knobs_reach_the_learner():
    cfg = PipelineConfig.from_params({'joint_names': NAMES, 'recent_fraction': 1.0,
                                      'min_learning_rate': 2e-4, 'learning_rate': 1e-3,
                                      'weight_ema_decay': 0.99, 'effort_label': 'delayed'})
    assert cfg.learner.recent_fraction == 1.0 and cfg.learner.min_learning_rate == 2e-4
    assert cfg.learner.weight_ema_decay == 0.99 and cfg.effort_label == 'delayed'
    assert all(lc.weight_ema_decay == 0.99 for _, lc in cfg.networks())
    default = PipelineConfig.from_params({'joint_names': NAMES})
    assert default.learner.weight_ema_decay == 0.0 and default.effort_label == 'filtered'
    # the floor never exceeds the starting rate
    cfg = PipelineConfig.from_params({'joint_names': NAMES, 'min_learning_rate': 1e-2,
                                      'learning_rate': 1e-3})
    assert cfg.learner.min_learning_rate == 1e-3


def test_second_network_can_have_its_own_width():
    cfg = PipelineConfig.from_params({'joint_names': NAMES, 'hidden_size': 32,
                                      'second_model': 'mlp', 'second_hidden_size': 128})
    assert cfg.learner.model_options['hidden_size'] == 32
    assert cfg.second_model_options == {'hidden_size': 128}
    same = PipelineConfig.from_params({'joint_names': NAMES, 'hidden_size': 32})
    assert same.second_model_options['hidden_size'] == 32


def test_velocity_sign_features_reach_the_recurrent_networks_only():
    cfg = PipelineConfig.from_params({'joint_names': NAMES, 'velocity_sign_gain': 20.0})
    assert [lc.model_options['velocity_sign_gain'] for _, lc in cfg.networks()] == [20.0, 20.0]
    assert 'velocity_sign_gain' not in PipelineConfig.from_params(
        {'joint_names': NAMES}).learner.model_options
    # a network that cannot take them is named, not silently left without
    for params in ({'model': 'mlp'}, {'second_model': 'va_sta_reslstm'}):
        with pytest.raises(ConfigError, match='velocity_sign_gain.*(mlp|va_sta_reslstm)'):
            PipelineConfig.from_params({'joint_names': NAMES, 'velocity_sign_gain': 20.0,
                                        **params})
    # ... unless it is not used
    single = PipelineConfig.from_params({'joint_names': NAMES, 'velocity_sign_gain': 20.0,
                                         'second_model': 'mlp', 'dual_enabled': False})
    assert [name for name, _ in single.networks()] == ['lstm']


def test_second_network_of_the_same_kind_gets_its_own_name_and_seed():
    cfg = PipelineConfig.from_params({'joint_names': NAMES, 'model': 'gru', 'second_model': 'gru'})
    (a, la), (b, lb) = cfg.networks()
    assert (a, b) == ('gru', 'gru_2') and lb.seed == la.seed + 1 and lb.model == 'gru'


# ----------------------------------------------------------------------------------- readiness
def test_ready_is_the_rolling_nmse_of_the_published_torque_with_hysteresis():
    mean, std = [1.0, -2.0], [2.0, 4.0]
    cfg = mlp_config()
    pipe = Pipeline(cfg, FixedTrainer(constant_mlp_weights(mean, std)))
    q = np.array([0.1, 0.2])

    # error d per joint, constant: nMSE = mean_j (d_j / std_j)^2
    def level(nmse):   # tau such that both joints have (d/std)^2 = nmse
        return np.asarray(mean) + np.sqrt(nmse) * np.asarray(std)

    outs = [o for o in feed_constant(pipe, 99, q, level(0.05)) if o is not None]
    assert outs and not any(o.ready for o in outs)           # fewer than ready_min_samples
    np.testing.assert_allclose(outs[-1].torque, mean, atol=1e-6)
    assert outs[-1].recent_nmse == pytest.approx(0.05, rel=1e-4)
    feed_constant(pipe, 20, q, level(0.05), t0=10.99)
    assert pipe.ready and pipe.recent_nmse == pytest.approx(0.05, rel=1e-4)
    # 0.12: above ready_nmse but within unready_factor (1.5) x ready_nmse -> stays ready
    feed_constant(pipe, 300, q, level(0.12), t0=11.19)
    assert pipe.recent_nmse == pytest.approx(0.12, rel=1e-3) and pipe.ready
    # 0.2 > 0.15 -> not ready; back to 0.12 (< 0.15 but > 0.1) -> still not ready
    feed_constant(pipe, 300, q, level(0.2), t0=14.19)
    assert pipe.recent_nmse == pytest.approx(0.2, rel=1e-3) and not pipe.ready
    feed_constant(pipe, 300, q, level(0.12), t0=17.19)
    assert not pipe.ready
    feed_constant(pipe, 300, q, level(0.02), t0=20.19)
    assert pipe.ready


def test_ready_min_seconds_counts_stamps_not_gaps_in_process_and_process_batch():
    """ready_min_seconds: ready once 1 s of scored stamps passed (a 3 s pause of the stream
    counts max_gap_s, 0.05 s), never before, with enough samples long before; process_batch gives
    the same ready rows."""
    mean, std = [1.0, -2.0], [2.0, 4.0]
    cfg = mlp_config(ready_min_samples=10, ready_min_seconds=1.0)
    q, tau = np.array([0.1, 0.2]), np.asarray(mean) + 0.1 * np.asarray(std)   # nMSE 0.01
    stamps = np.concatenate((10.0 + np.arange(50) / 100.0, 13.5 + np.arange(150) / 100.0))
    pipe = Pipeline(cfg, FixedTrainer(constant_mlp_weights(mean, std)))
    outs, seconds = [], []
    for s in stamps:
        outs.append(pipe.process(s, q, np.zeros(2), tau))
        seconds.append(pipe.readiness.seconds)
    ready = [o is not None and o.ready for o in outs]
    first = ready.index(True)
    # an output's ready is the state before its own score: the samples scored before it
    assert 1.0 <= seconds[first - 1] < 1.0 + 0.011
    assert stamps[first] - 13.5 > 0.35          # the pause did not count as 3 s of motion
    assert all(ready[first:])
    batch = Pipeline(cfg, FixedTrainer(constant_mlp_weights(mean, std)))
    got = batch.process_batch(list(stamps), [q] * len(stamps), [np.zeros(2)] * len(stamps),
                              [tau] * len(stamps))
    assert [o is not None and o.ready for o in got] == ready
    assert batch.readiness.seconds == pytest.approx(pipe.readiness.seconds, rel=1e-12)


def test_torque_is_clamped_and_effort_scaled():
    cfg = mlp_config(torque_limits=[2.5, 3.0], effort_scale=[2.0, -1.0])
    trainer = FixedTrainer(constant_mlp_weights([10.0, -10.0], [1.0, 1.0]))
    pipe = Pipeline(cfg, trainer)
    outs = [o for o in feed_constant(pipe, 50, np.zeros(2), np.array([1.5, 4.0])) if o is not None]
    assert len(outs) == 50 - 2           # window 3: the first 2 rows only fill it
    for o in outs:
        np.testing.assert_array_equal(o.torque, [2.5, -3.0])
        np.testing.assert_allclose(o.tau, [3.0, -4.0], atol=1e-9)   # effort * effort_scale
    assert trainer.submitted == 50 - 2
    ref = [pipe.predict_reference([0.0, 0.0], [0.0, 0.0], [0.0, 0.0], stamp=i * 0.01)
           for i in range(4)]
    assert ref[0] is None and ref[1] is None                        # the reference window fills
    np.testing.assert_array_equal(ref[3], [2.5, -3.0])


@pytest.mark.parametrize('label', ['filtered', 'delayed'])
def test_efforts_beyond_the_torque_limits_are_never_learned_nor_scored(label):
    """The probe: an effort of 9000 N m with a limit of 176. The sample is still predicted and
    published; its effort is no label (not submitted, not scored, not in the identifier) and
    never reaches the effort filter; counted. process and process_arrays alike."""
    cfg = mlp_config(torque_limits=[176.0, 176.0], effort_label=label)
    tau = np.array([1.0, 2.0])

    def stream(spike_at):
        t = 10.0 + np.arange(300) / 100.0
        taus = np.tile(tau, (300, 1))
        for k in spike_at:
            taus[k, 1] = 9000.0 if k % 2 else -1.6 * 176.0
        return t, np.zeros((300, 2)), np.zeros((300, 2)), taus

    spikes = [100, 151, 200]
    clean_tr, bad_tr = (FixedTrainer(constant_mlp_weights([1.0, 2.0], [1.0, 1.0]))
                        for _ in range(2))
    clean, bad = Pipeline(cfg, clean_tr), Pipeline(cfg, bad_tr)
    t, q, qd, taus = stream(spikes)
    outs = [bad.process(t[k], q[k], qd[k], taus[k]) for k in range(300)]
    ref = [clean.process(t[k], q[k], qd[k], None if k in spikes else taus[k])
           for k in range(300)]
    for k in spikes:
        assert outs[k] is not None and outs[k].tau is None
        np.testing.assert_array_equal(outs[k].torque, [1.0, 2.0])   # still predicted
    for a, b in zip(outs, ref):
        assert (a is None) == (b is None)
        if a is not None:
            assert (a.tau is None) == (b.tau is None)
            if a.tau is not None:
                np.testing.assert_array_equal(a.tau, b.tau)   # the spike never got filtered in
            assert a.recent_nmse == b.recent_nmse
    assert bad_tr.submitted == clean_tr.submitted < 300 - 2
    assert bad.stats()['estimator']['rejected_labels'] == len(spikes)
    assert bad.ready == clean.ready and bad.recent_nmse == clean.recent_nmse
    # the batch form (learning off) uses the same rule
    batch = Pipeline(cfg, FixedTrainer(constant_mlp_weights([1.0, 2.0], [1.0, 1.0])))
    res = batch.process_arrays(t, q, qd, taus)
    assert res.valid[spikes].all() and not res.has_tau[spikes].any()
    assert res.has_tau[res.valid].sum() == res.valid.sum() - len(spikes)
    assert batch.stats()['estimator']['rejected_labels'] == len(spikes)


def test_bad_samples_are_dropped_counted_and_never_produce_nonfinite_output():
    cfg = mlp_config()
    pipe = Pipeline(cfg, FixedTrainer(constant_mlp_weights([0.0, 0.0], [1.0, 1.0])))
    q, tau = np.array([0.1, 0.2]), np.array([0.5, 0.5])
    t = 10.0
    outputs = []
    bad = [
        (np.array([np.nan, 0.2]), None, tau),           # NaN position
        (q, None, np.array([np.inf, 0.0])),             # Inf effort
        (np.array([0.1]), None, tau),                   # wrong length
        (np.array([1e9, 0.0]), None, tau),              # absurd magnitude
        ('garbage', None, tau),                         # not numbers
    ]
    for i in range(200):
        t += 0.01
        outputs.append(pipe.process(t, q, np.zeros(2), tau))
        if i % 10 == 5:
            qq, qd, tt = bad[(i // 10) % len(bad)]
            outputs.append(pipe.process(t + 0.001, qq, qd, tt))
            outputs.append(pipe.process(t, q, np.zeros(2), tau))          # duplicate stamp
            outputs.append(pipe.process(t - 0.005, q, np.zeros(2), tau))  # backwards
    good = [o for o in outputs if o is not None]
    assert len(good) >= 190
    for o in good:
        assert np.isfinite(o.torque).all() and np.isfinite(o.uncertainty).all()
    est = pipe.stats()['estimator']
    assert est['rejected_nonfinite'] >= 4 and est['rejected_shape'] >= 4
    assert est['rejected_magnitude'] >= 4 and est['dropped_stamp'] >= 30
    assert pipe.predict_reference([np.nan, 0], [0, 0], [0, 0]) is None
    assert pipe.predict_reference([0, 0, 0], [0, 0], [0, 0]) is None
    assert pipe.counters['rejected_references'] == 2


def test_a_gap_restarts_the_windows():
    cfg = mlp_config(max_gap_s=0.05)
    pipe = Pipeline(cfg, FixedTrainer(constant_mlp_weights([0.0, 0.0], [1.0, 1.0])))
    q, tau = np.zeros(2), np.zeros(2)
    first = feed_constant(pipe, 10, q, tau, t0=10.0)
    after = feed_constant(pipe, 10, q, tau, t0=20.0)     # 10 s gap
    assert [o is None for o in first[:3]] == [True, True, False]
    assert [o is None for o in after[:3]] == [True, True, False]
    assert pipe.counters['stream_resets'] == 1


def test_deferred_bookkeeping_gives_the_same_outputs():
    t, q, qd, tau = generated_stream(count=300)
    params = {'joint_names': NAMES, 'hidden_size': 8, 'num_layers': 1, 'window': 4,
              'min_samples': 32, 'batch_size': 16, 'updates_per_sample': 0.2, 'poll_every': 10}
    runs = []
    for defer in (False, True):
        cfg = PipelineConfig.from_params(params)
        pipe = Pipeline(cfg, make_trainer(cfg, 'inline'))
        outs = []
        for i in range(len(t)):
            out = pipe.process(t[i], q[i], qd[i], tau[i], defer=defer)
            if defer:
                published = out
                before = None if out is None else (out.torque.copy(), out.active.copy())
                out = pipe.finish()       # the complete Output, a new object
                assert (published is None) == (out is None)
                if out is not None:       # the published phase is never changed afterwards
                    assert isinstance(published, Published) and isinstance(out, Output)
                    np.testing.assert_array_equal(published.torque, before[0])
                    np.testing.assert_array_equal(published.active, before[1])
                    np.testing.assert_array_equal(out.torque, published.torque)
                    assert (out.stamp, out.ready, out.recent_nmse) == \
                        (published.stamp, published.ready, published.recent_nmse)
                assert pipe.finish() is None              # nothing pending any more
            outs.append(out)
        runs.append(outs)
    assert sum(x is not None for x in runs[0]) > 250
    for a, b in zip(*runs):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.torque, b.torque)
            np.testing.assert_array_equal(a.uncertainty, b.uncertainty)
            np.testing.assert_array_equal(a.active, b.active)
            assert set(a.predictions) == set(b.predictions) == {'lstm', 'gru'}
            for name in a.predictions:
                np.testing.assert_array_equal(a.predictions[name], b.predictions[name])


# ----------------------------------------------------------------------------------- learning
def test_the_error_of_the_published_torque_falls_as_the_stream_goes_on():
    t, q, qd, tau = generated_stream(count=1500)
    cfg = PipelineConfig.from_params({
        'joint_names': NAMES, 'hidden_size': 16, 'num_layers': 1, 'window': 5, 'batch_size': 32,
        'min_samples': 64, 'updates_per_sample': 0.5, 'learning_rate': 3e-3, 'poll_every': 20,
        'second_model': 'mlp', 'torque_limits': [50.0, 50.0], 'ready_nmse': 0.2,
        'ready_min_samples': 300, 'ready_window': 200})
    pipe = Pipeline(cfg, make_trainer(cfg, 'inline'))
    err, var = [], tau.var(axis=0)
    for i in range(len(t)):
        out = pipe.process(t[i], q[i], qd[i], tau[i])
        if out is not None:
            assert np.isfinite(out.torque).all() and (np.abs(out.torque) <= 50.0).all()
            assert set(out.predictions) == {'lstm', 'mlp'}
            assert out.active.shape == (2,) and set(out.active.tolist()) <= {0, 1}
            err.append(np.mean((out.torque - out.tau) ** 2 / var))
    err = np.array(err)
    first, last = err[:200].mean(), err[-200:].mean()
    assert last < 0.3 * first, (first, last)
    assert pipe.recent_nmse < 0.2 and pipe.ready
    stats = pipe.stats()
    assert stats['weights_version']['lstm'] > 5 and stats['learners']['lstm']['steps'] > 100


def test_thread_trainer_learns_and_hands_out_weights():
    cfg = PipelineConfig.from_params({'joint_names': NAMES, 'model': 'mlp', 'dual_enabled': False,
                                      'window': 3, 'min_samples': 16, 'batch_size': 16,
                                      'hidden_size': 8})
    with make_trainer(cfg, 'thread', publish_period_s=0.05) as trainer:
        assert isinstance(trainer, ThreadTrainer)
        assert trainer.poll() is not None                  # the initial weights
        rng = np.random.default_rng(0)
        for _ in range(100):
            trainer.submit(rng.normal(size=(3, 6)), rng.normal(size=2))
        deadline = time.monotonic() + 20
        weights = None
        # the thread learns the samples in chunks: wait for weights that have seen all 100
        while time.monotonic() < deadline and not (weights and weights['mlp']['steps'] > 0 and
                                                   weights['mlp']['samples'] == 100):
            weights = trainer.poll() or weights
            time.sleep(0.02)
        assert weights and weights['mlp']['samples'] == 100 and weights['mlp']['steps'] > 0
    assert not trainer.alive


# ----------------------------------------------------------------------------------- batch replay
class FrozenTrainer:
    """Hands out one fixed set of weights (all networks) and never learns."""

    def __init__(self, weights: dict) -> None:
        self._weights = weights
        self.counters = {'submitted': 0}

    def submit(self, window, tau) -> None:
        self.counters['submitted'] += 1

    def poll(self):
        w, self._weights = self._weights, None
        return w

    def stats(self) -> dict:
        return {}

    def save(self, prefix, **options):
        return {}

    def close(self) -> None:
        pass


BATCH_PARAMS = {'joint_names': NAMES, 'hidden_size': 8, 'num_layers': 2, 'window': 4,
                'min_samples': 32, 'batch_size': 16, 'updates_per_sample': 0.3,
                'learning_rate': 3e-3, 'poll_every': 10, 'dual_window': 20,
                'dual_hysteresis': 0.05, 'max_gap_s': 0.05, 'ready_window': 50,
                'ready_min_samples': 60, 'ready_nmse': 0.5, 'torque_limits': [3.0, 50.0],
                'effort_scale': [1.0, 2.0]}


def _trained_weights(params: dict) -> dict:
    """Weights of an InlineTrainer that learned a generated stream through a pipeline."""
    torch.manual_seed(0)
    cfg = PipelineConfig.from_params(params)
    trainer = make_trainer(cfg, 'inline')
    pipe = Pipeline(cfg, trainer)
    t, q, qd, tau = generated_stream(count=600, seed=1)
    for i in range(len(t)):
        pipe.process(t[i], q[i], qd[i], tau[i])
    assert all(lr.steps > 50 for lr in trainer.learners.values())
    return {name: lr.export_weights() for name, lr in trainer.learners.items()}


def _replay_inputs():
    """A stream with a gap (0.5 s after sample 150) and a few samples the estimator rejects."""
    t, q, qd, tau = generated_stream(count=400, seed=2)
    t = t.copy()
    t[150:] += 0.5
    stamps, qs, qds, taus = list(t), list(q), list(qd), list(tau)
    qs[60] = np.array([np.nan, 0.0])                          # NaN position
    taus[200] = np.array([1.0])                               # wrong length
    qds[250] = None                                           # no velocity: differences
    taus[251] = None                                          # no effort: not scored
    stamps[300] = stamps[299]                                 # duplicate stamp
    qs[320] = 'garbage'
    return stamps, qs, qds, taus


def _assert_same_outputs(a_list, b_list):
    assert len(a_list) == len(b_list)
    for i, (a, b) in enumerate(zip(a_list, b_list)):
        assert (a is None) == (b is None), i
        if a is None:
            continue
        assert a.stamp == b.stamp
        np.testing.assert_allclose(a.torque, b.torque, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(a.active, b.active)
        np.testing.assert_allclose(a.std_a, b.std_a, rtol=0, atol=1e-5)
        np.testing.assert_allclose(a.std_b, b.std_b, rtol=0, atol=1e-5)
        np.testing.assert_allclose(a.uncertainty, b.uncertainty, rtol=0, atol=1e-5)
        assert (a.tau is None) == (b.tau is None)
        if a.tau is not None:
            np.testing.assert_array_equal(a.tau, b.tau)
        assert set(a.predictions) == set(b.predictions)
        for name in a.predictions:
            pa, pb = a.predictions[name], b.predictions[name]
            assert (pa is None) == (pb is None)
            if pa is not None:
                np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-5)
        assert a.ready == b.ready
        assert a.recent_nmse == pytest.approx(b.recent_nmse, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize('dual', [True, False])
def test_process_batch_equals_process_sample_by_sample(dual):
    params = {**BATCH_PARAMS, 'dual_enabled': dual}
    weights = _trained_weights(params)
    cfg = PipelineConfig.from_params(params)
    stamps, qs, qds, taus = _replay_inputs()

    ref = Pipeline(cfg, FrozenTrainer(weights))
    expected = [ref.process(stamps[i], qs[i], qds[i], taus[i]) for i in range(len(stamps))]
    batch = Pipeline(cfg, FrozenTrainer(weights))
    got = batch.process_batch(stamps, qs, qds, taus)
    _assert_same_outputs(expected, got)

    outputs = [o for o in got if o is not None]
    assert len(outputs) > 300
    assert all(np.isfinite(o.torque).all() and (np.abs(o.torque) <= [3.0, 50.0]).all()
               for o in outputs)
    assert any(abs(o.torque[0]) == 3.0 for o in outputs)            # some torques were clamped
    assert any(o.ready for o in outputs) and not all(o.ready for o in outputs)
    if dual:
        actives = np.array([o.active for o in outputs])
        assert (actives == 1).any()                     # the identifier switched somewhere
        # the stats count every change of a joint's choice (the published ones at least: a
        # change may also fall on a sample without an output)
        published = np.count_nonzero(np.diff(np.vstack([np.zeros((1, 2)), actives]), axis=0),
                                     axis=0)
        switches = batch.stats()['identifier_switches']
        assert switches == ref.stats()['identifier_switches']
        assert all(s >= p for s, p in zip(switches, published)) and sum(published) > 0
    # the gap and the rejected samples: the same counts, the same warming-up samples
    for key in ('samples', 'outputs', 'warming_up', 'dropped_nonfinite', 'stream_resets'):
        assert batch.counters[key] == ref.counters[key], key
    assert batch.counters['stream_resets'] >= 1
    assert batch.estimator.counters == ref.estimator.counters
    assert batch.counters['submitted'] == 0                          # learning off
    assert batch.recent_nmse == pytest.approx(ref.recent_nmse, rel=1e-6)
    assert batch.ready == ref.ready
    np.testing.assert_array_equal(batch.identifier.active, ref.identifier.active)


def test_process_batch_continues_a_stream_and_leaves_a_fresh_window():
    weights = _trained_weights(BATCH_PARAMS)
    cfg = PipelineConfig.from_params(BATCH_PARAMS)
    t, q, qd, tau = generated_stream(count=200, seed=3)
    ref = Pipeline(cfg, FrozenTrainer(weights))
    expected = [ref.process(t[i], q[i], qd[i], tau[i]) for i in range(len(t))]
    pipe = Pipeline(cfg, FrozenTrainer(weights))
    got = [pipe.process(t[i], q[i], qd[i], tau[i]) for i in range(100)]
    got += pipe.process_batch(t[100:180], q[100:180], qd[100:180], tau[100:180])
    assert got[100] is not None                        # the window carried over: no warm-up
    _assert_same_outputs(expected[:180], got)
    # after a batch the next process() starts a fresh window (L - 1 = 3 samples warm up)
    after = [pipe.process(t[i], q[i], qd[i], tau[i]) for i in range(180, 200)]
    assert [o is None for o in after[:4]] == [True, True, True, False]
    np.testing.assert_allclose(after[-1].predictions['lstm'], expected[-1].predictions['lstm'],
                               atol=1e-5)
    with pytest.raises(ValueError):
        pipe.process_batch(t[:5], q[:4])


def test_process_arrays_takes_plain_arrays_and_matches_process_batch():
    """The (N, n) array form (what invdyn_eval passes) gives the list form's outputs."""
    weights = _trained_weights(BATCH_PARAMS)
    cfg = PipelineConfig.from_params(BATCH_PARAMS)
    t, q, qd, tau = generated_stream(count=300, seed=4)
    ref = Pipeline(cfg, FrozenTrainer(weights))
    expected = ref.process_batch(list(t), list(q), list(qd), list(tau))
    pipe = Pipeline(cfg, FrozenTrainer(weights))
    batch = pipe.process_arrays(np.asarray(t), np.asarray(q), np.asarray(qd), np.asarray(tau))
    assert len(batch) == 300 and batch.valid.sum() == sum(o is not None for o in expected)
    _assert_same_outputs(expected, batch.outputs())
    assert np.isnan(batch.torque[~batch.valid]).all() and (batch.active[~batch.valid] == -1).all()
    assert pipe.counters == ref.counters


# ----------------------------------------------------------------------------------- labels
class RecordingTrainer(FixedTrainer):
    def __init__(self, weights: dict) -> None:
        super().__init__(weights)
        self.labels: list[np.ndarray] = []
        self.windows: list[np.ndarray] = []

    def submit(self, window, tau) -> None:
        super().submit(window, tau)
        self.windows.append(np.array(window))
        self.labels.append(np.array(tau))


def test_delayed_effort_label_is_the_raw_effort_filter_delay_ago():
    """``effort_label='delayed'``: each learned window (ending at sample k) is paired with the
    measured effort at k - filter_delay_s * rate (interpolated), not with the filtered one; a
    sample without effort leaves out exactly the labels that would use it; a gap restarts it."""
    rate = 100.0
    cfg = mlp_config(effort_label='delayed', filter_cutoff_hz=10.0)
    trainer = RecordingTrainer(constant_mlp_weights([0.0, 0.0], [1.0, 1.0]))
    pipe = Pipeline(cfg, trainer)
    raw = np.stack([np.arange(200.0) ** 1.5, np.sin(np.arange(200.0))], axis=1)
    k_without = 120                                    # this sample has no effort
    sent = []                                          # sample index per submitted label
    for k in range(200):
        before = len(trainer.labels)
        pipe.process(10.0 + k / rate, np.array([0.01 * k, 0.0]), np.zeros(2),
                     None if k == k_without else raw[k])
        if len(trainer.labels) > before:
            sent.append(k)
    d = pipe.estimator.delay_s * rate
    whole, frac = int(np.floor(d)), d - np.floor(d)
    assert d > 1.0 and 0.0 < frac < 1.0                # a real interpolation is tested
    for k, label in zip(sent, trainer.labels):
        want = (1 - frac) * raw[k - whole] + frac * raw[k - whole - 1]
        np.testing.assert_allclose(label, want, rtol=1e-12)
    skipped = {k_without + whole, k_without + whole + 1}  # the labels that need sample 120
    assert skipped.isdisjoint(sent) and {k_without + whole - 1, k_without + whole + 2} <= set(sent)
    # the filtered label (default) differs: it is the effort through the low-pass
    default = RecordingTrainer(constant_mlp_weights([0.0, 0.0], [1.0, 1.0]))
    pipe2 = Pipeline(mlp_config(filter_cutoff_hz=10.0), default)
    for k in range(60):
        pipe2.process(10.0 + k / rate, np.array([0.01 * k, 0.0]), np.zeros(2), raw[k])
    assert not np.allclose(default.labels[-1], trainer.labels[len(default.labels) - 1])

    # a gap restarts the history: no label until whole + 2 new samples were seen
    n_before = len(trainer.labels)
    for k in range(10):
        pipe.process(20.0 + k / rate, np.array([0.0, 0.0]), np.zeros(2), raw[k])
    got = len(trainer.labels) - n_before
    assert got == 10 - max(whole + 1, cfg.learner.window - 1)    # first label at index whole+1
    assert pipe.estimator.counters['resets'] == 1


def test_effort_label_is_validated():
    with pytest.raises(ConfigError, match='effort_label'):
        mlp_config(effort_label='raw')


def test_settled_rate_is_none_until_the_measured_rate_settles_and_the_configured_one_at_once():
    configured = Pipeline(mlp_config(), FixedTrainer(constant_mlp_weights([0.0, 0.0], [1.0, 1.0])))
    assert configured.settled_rate_hz == 100.0 and configured.filter_error is None
    measured = Pipeline(mlp_config(rate_hz=0.0),
                        FixedTrainer(constant_mlp_weights([0.0, 0.0], [1.0, 1.0])))
    assert measured.settled_rate_hz is None
    feed_constant(measured, 400, [0.1, 0.2], [1.0, 2.0], rate=250.0)
    assert measured.settled_rate_hz == pytest.approx(250.0, rel=1e-3)
    assert measured.filter_error is None
    slow = Pipeline(mlp_config(rate_hz=0.0, filter_cutoff_hz=40.0),
                    FixedTrainer(constant_mlp_weights([0.0, 0.0], [1.0, 1.0])))
    feed_constant(slow, 100, [0.1, 0.2], [1.0, 2.0], rate=50.0)       # Nyquist 25 Hz < 40 Hz
    assert 'filter_cutoff_hz' in slow.filter_error
