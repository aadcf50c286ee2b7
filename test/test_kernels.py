"""kernels: the compiled read-out equals the numpy path; without numba the numpy path is used."""
import os
import subprocess
import sys

import numpy as np
import pytest

from invdyn_ros import kernels
from invdyn_ros.predictor import Predictor


def test_numba_kernel_is_available_in_the_test_environment():
    # requirements.txt pins numba: the node's fast path must be the compiled one here
    assert kernels.AVAILABLE
    assert Predictor('lstm', 2, {'hidden_size': 4}, window=3)._kernel is not None
    assert Predictor('mlp', 2, {'hidden_size': 4}, window=3)._kernel is None


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
    code = ('import numpy as np; from invdyn_ros import kernels; '
            'from invdyn_ros.predictor import Predictor; '
            'p = Predictor("gru", 2, {"hidden_size": 4}, window=2); '
            'p.push(np.ones(6)); y = p.push(np.ones(6)); '
            'print(kernels.AVAILABLE, p._kernel is None, y.shape, bool(np.isfinite(y).all()))')
    env = dict(os.environ, **{kernels.DISABLE_ENV: '1'})
    res = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ['False', 'True', '(2,)', 'True']
