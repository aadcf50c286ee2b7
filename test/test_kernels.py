"""kernels: the compiled read-out and estimator steps equal the numpy path (the estimator bit for
bit); without numba the numpy path is used."""
import os
import subprocess
import sys

import numpy as np
import pytest

from invdyn_ros.learning.predictor import Predictor
from invdyn_ros.stages import kernels
from invdyn_ros.stages.estimation import FilterConfig, StreamingEstimator


def test_numba_kernel_is_available_in_the_test_environment():
    # requirements.txt pins numba: the node's fast path must be the compiled one here
    assert kernels.AVAILABLE
    assert Predictor('lstm', 2, {'hidden_size': 4}, window=3)._kernel is not None
    assert Predictor('mlp', 2, {'hidden_size': 4}, window=3)._kernel is None
    assert StreamingEstimator(2)._filter_step is not None


@pytest.mark.parametrize('kind', ['lstm', 'gru'])
@pytest.mark.parametrize('layers', [1, 2])
@pytest.mark.parametrize('gain', [0.0, 20.0])
def test_compiled_push_equals_numpy_push(kind, layers, gain):
    opts = {'hidden_size': 16, 'num_layers': layers}
    if gain:
        opts['velocity_sign_gain'] = gain
    fast = Predictor(kind, 7, opts, window=4)
    slow = Predictor(kind, 7, opts, window=4)
    slow.model.load_state_dict(fast.model.state_dict())
    slow._refresh_constants()
    slow._kernel = None                         # the numpy cells
    rng = np.random.default_rng(3)
    outputs = 0
    for i in range(120):
        row = rng.normal(scale=2.0, size=21)
        if i == 40:
            row[5] = np.nan                     # rejected and resets the stream on both paths
        a, b = fast.push(row, defer=i % 2 == 0), slow.push(row, defer=i % 2 == 0)
        assert (a is None) == (b is None), i
        if a is not None:
            outputs += 1
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            assert a is not b
    assert outputs == 120 - 1 - 2 * 3           # warm-up after the start and after the NaN row
    assert fast.counters == slow.counters
    assert fast.counters['rejected_rows'] == 1


def test_compiled_push_drops_a_nonfinite_output():
    p = Predictor('lstm', 3, {'hidden_size': 8}, window=2)
    p.push(np.ones(9))
    assert p.push(np.ones(9)) is not None
    p._np_head_b[1] = np.inf                    # a broken head: the output must not pass
    assert p.push(np.ones(9)) is None
    assert p.counters['nonfinite_outputs'] == 1


def test_without_numba_the_numpy_path_runs():
    code = ('import numpy as np; from invdyn_ros.stages import kernels; '
            'from invdyn_ros.learning.predictor import Predictor; '
            'p = Predictor("gru", 2, {"hidden_size": 4}, window=2); '
            'p.push(np.ones(6)); y = p.push(np.ones(6)); '
            'from invdyn_ros.stages.estimation import StreamingEstimator; '
            'e = StreamingEstimator(2); '
            'st = [e.update(1e-3 * k, np.full(2, 1e-3 * k), np.ones(2)) for k in range(40)]; '
            'print(kernels.AVAILABLE, p._kernel is None, y.shape, bool(np.isfinite(y).all()), '
            'e._filter_step is None, round(float(st[-1].qd[0]), 6))')
    env = dict(os.environ, **{kernels.DISABLE_ENV: '1'})
    res = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ['False', 'True', '(2,)', 'True', 'True', '1.0']


def _estimator_pair(n, rate_hz):
    fast = StreamingEstimator(n, FilterConfig(rate_hz=rate_hz))
    slow = StreamingEstimator(n, FilterConfig(rate_hz=rate_hz))
    slow._in_range = slow._filter_step = None   # the numpy / scipy path
    assert fast._filter_step is not None
    return fast, slow


@pytest.mark.parametrize('rate_hz', [None, 500.0])
@pytest.mark.parametrize('seed', [0, 1])
def test_compiled_estimator_step_equals_numpy_bit_for_bit(rate_hz, seed):
    # a dirty stream: jittered stamps, a duplicate stamp, a gap, NaN / Inf / absurd values, velocity
    # and effort missing on some samples -- every branch of update() against the numpy path
    rng = np.random.default_rng(seed)
    n, N = 7, 3000
    t = np.cumsum(1e-3 + 2e-4 * rng.standard_normal(N))
    t[100] = t[99]
    t[2000:] += 0.5
    q = np.cumsum(rng.normal(size=(N, n)) * 1e-3, axis=0)
    qd = rng.normal(size=(N, n))
    tau = rng.normal(size=(N, n)) * 10.0
    qd[50, 2] = np.nan
    q[300, 1] = np.inf
    tau[400, 0] = 1e12
    qd[700, 3] = 1e9
    fast, slow = _estimator_pair(n, rate_hz)
    states = 0
    for k in range(N):
        args = (t[k], q[k], qd[k] if k % 500 else None, tau[k] if k > 10 else None)
        a, b = fast.update(*args), slow.update(*args)
        assert (a is None) == (b is None), k
        if a is None:
            continue
        states += 1
        assert a.stamp == b.stamp
        for field in ('q', 'qd', 'qdd', 'tau'):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None) == (y is None), (k, field)
            if x is not None:
                np.testing.assert_array_equal(x, y, err_msg=f'{k} {field}')
    assert fast.counters == slow.counters
    assert states > N - 60
    assert fast.counters['resets'] == 1 and fast.counters['rejected_magnitude'] == 2
    np.testing.assert_array_equal(fast._zi, slow._zi)          # the filter state too


def test_compiled_estimator_step_rejects_a_nonfinite_output_and_resets():
    for est in _estimator_pair(2, 1000.0):
        for k in range(5):
            assert est.update(1e-3 * (k + 1), np.zeros(2), np.zeros(2)) is not None
        est._zi[1, 0, 0] = np.inf                # a broken filter state: nothing may pass
        assert est.update(6e-3, np.zeros(2), np.zeros(2)) is None
        assert est.counters['rejected_nonfinite'] == 1 and est.counters['resets'] == 1
        est.update(7e-3, np.zeros(2), np.zeros(2))   # re-primed after the reset: finite again
        state = est.update(8e-3, np.zeros(2), np.zeros(2))
        assert state is not None and np.isfinite(state.qdd).all()


def test_pipeline_with_kernels_equals_pipeline_without():
    # the node's whole fast path (estimator + dual LSTM/GRU read-out + selection + clamp), compiled
    # vs numpy: the same outputs sample by sample (states bit for bit, torques to float32 rounding)
    from invdyn_ros.learning.learner import LearnerConfig
    from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer

    def pipeline():
        learner = LearnerConfig(model='lstm', model_options={'hidden_size': 16}, window=4,
                                min_samples=10 ** 9, buffer_capacity=500, recent_capacity=50)
        cfg = PipelineConfig(joint_names=('a', 'b', 'c'), filter=FilterConfig(rate_hz=500.0),
                             learner=learner, second_model='gru',
                             second_model_options={'hidden_size': 16}, torque_limits=(5.0,) * 3)
        return Pipeline(cfg, make_trainer(cfg, 'inline'))

    fast, slow = pipeline(), pipeline()
    for name, p in slow.predictors.items():
        p.model.load_state_dict(fast.predictors[name].model.state_dict())
        p._refresh_constants()
        p._kernel = None
    slow.estimator._in_range = slow.estimator._filter_step = None
    assert all(p._kernel is not None for p in fast.predictors.values())
    rng = np.random.default_rng(5)
    t = 1.0 + np.arange(400) / 500.0
    q = np.cumsum(rng.normal(scale=1e-3, size=(400, 3)), axis=0)
    qd, tau = rng.normal(size=(400, 3)), rng.normal(scale=3.0, size=(400, 3))
    qd[200, 1] = np.nan                                   # a position difference on one sample
    outputs = 0
    for k in range(400):
        a = fast.process(t[k], q[k], qd[k], tau[k], defer=True)
        b = slow.process(t[k], q[k], qd[k], tau[k], defer=True)
        fast.finish()
        slow.finish()
        assert (a is None) == (b is None), k
        if a is not None:
            outputs += 1
            for field in ('q', 'qd', 'qdd'):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            np.testing.assert_allclose(a.torque, b.torque, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(a.active, b.active)
    assert outputs > 350


def test_no_kernel_is_compiled_again_on_the_message_path():
    # warm_up compiles one specialisation per kernel; the estimator and predictor must only ever
    # call them with those argument types (a new one would be a ~1 s stall on a message), even
    # with integer limits in the config
    est = StreamingEstimator(3, FilterConfig(rate_hz=100.0, max_abs_position=10,
                                             max_abs_velocity=100, max_abs_effort=1000))
    pred = Predictor('gru', 3, {'hidden_size': 8, 'num_layers': 2}, window=3)
    rng = np.random.default_rng(0)
    for k in range(30):
        s = est.update(0.01 * (k + 1), rng.normal(size=3), rng.normal(size=3), rng.normal(size=3))
        if s is not None:
            pred.push(np.concatenate([s.q, s.qd, s.qdd]), defer=k % 2 == 0)
            pred.complete()
    assert est.counters['accepted'] == 30 and pred.counters['pushed'] > 20
    for kernel in (kernels.recurrent_readout, kernels.in_range, kernels.filter_step):
        assert len(kernel.signatures) == 1, kernel.signatures
