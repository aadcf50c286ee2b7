"""RunningScaler against sklearn's StandardScaler (known answers) and its persistence."""
import io

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from invdyn_ros.errors import ConfigError
from invdyn_ros.learning.scaling import RunningScaler


def _data(seed=0, rows=1000, dim=5):
    rng = np.random.default_rng(seed)
    # very different offsets and scales per channel, to stress the numerics
    scale = np.array([1e-3, 1.0, 50.0, 1e3, 7.0])
    offset = np.array([1e4, -3.0, 0.0, 5e5, 1.0])
    return rng.normal(size=(rows, dim)) * scale + offset


def test_chunked_partial_fit_equals_standard_scaler():
    x = _data()
    scaler = RunningScaler(5)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=40, replace=False))
    for chunk in np.split(x, cuts):
        scaler.partial_fit(chunk)
    scaler.partial_fit(np.empty((0, 5)))  # no-op
    ref = StandardScaler().fit(x)
    assert scaler.count == len(x)
    np.testing.assert_allclose(scaler.mean, ref.mean_, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(scaler.var, ref.var_, rtol=1e-9)
    np.testing.assert_allclose(scaler.std, ref.scale_, rtol=1e-9)
    np.testing.assert_allclose(scaler.transform(x), ref.transform(x), rtol=1e-7, atol=1e-7)


def test_single_rows_equal_batch_fit():
    x = _data(rows=200)
    a, b = RunningScaler(5), RunningScaler(5)
    for row in x:
        a.partial_fit(row[None])
    b.partial_fit(x)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)
    np.testing.assert_allclose(a.var, b.var, rtol=1e-9)


def test_transform_any_leading_dims_and_inverse_round_trip():
    x = _data()
    scaler = RunningScaler(5).fit(x)
    windows = x[:600].reshape(20, 30, 5)
    z = scaler.transform(windows)
    assert z.shape == windows.shape and z.dtype == np.float64
    np.testing.assert_allclose(z.reshape(-1, 5), scaler.transform(x[:600]))
    np.testing.assert_allclose(scaler.inverse_transform(z), windows, rtol=1e-12)
    # standardized training data has mean 0 and population std 1
    zx = scaler.transform(x)
    # (channel 0 has mean 1e4 and std 1e-3: float64 cancellation leaves ~1e-9 of noise)
    np.testing.assert_allclose(zx.mean(0), 0.0, atol=1e-7)
    np.testing.assert_allclose(zx.std(0), 1.0, rtol=1e-9)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_torch_tensors_keep_dtype_and_match_numpy(dtype):
    # Tensors are scaled in their own dtype; use data a float32 can represent (|mean|/std << 1e5).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 5)) * [0.5, 2.0, 50.0, 1e-2, 7.0] + [1.0, -3.0, 10.0, 0.0, 20.0]
    scaler = RunningScaler(5).fit(x)
    t = torch.as_tensor(x[:64].reshape(8, 8, 5), dtype=dtype)
    z = scaler.transform(t)
    assert isinstance(z, torch.Tensor) and z.dtype == dtype and z.shape == t.shape
    ref = scaler.transform(t.double().numpy())
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(z.double().numpy(), ref, rtol=tol, atol=tol)
    back = scaler.inverse_transform(z)
    assert back.dtype == dtype
    np.testing.assert_allclose(back.double().numpy(), t.double().numpy(), rtol=tol)


def test_cached_torch_stats_follow_new_data():
    scaler = RunningScaler(1).fit(np.array([[0.0], [2.0]]))  # mean 1, std 1
    t = torch.tensor([[3.0]])
    assert scaler.transform(t).item() == pytest.approx(2.0)
    scaler.partial_fit(np.array([[4.0], [6.0]]))  # mean 3, var 5
    assert scaler.transform(t).item() == pytest.approx(0.0)
    assert scaler.inverse_transform(torch.tensor([[1.0]])).item() == pytest.approx(3.0 + np.sqrt(5.0))


def test_constant_channel_uses_std_floor():
    x = np.column_stack([np.full(50, 2.5), np.arange(50.0)])
    scaler = RunningScaler(2).fit(x)
    assert scaler.var[0] == pytest.approx(0.0, abs=1e-20)
    assert scaler.std[0] == 1e-6
    z = scaler.transform(x)
    assert np.all(np.isfinite(z))
    np.testing.assert_allclose(z[:, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(scaler.inverse_transform(z), x)
    # a single sample: zero variance, still finite
    one = RunningScaler(2).fit(x[:1])
    assert np.all(one.std == 1e-6) and np.all(np.isfinite(one.transform(x[:3])))


def test_unfitted_scaler_is_identity():
    scaler = RunningScaler(3)
    assert scaler.count == 0 and not scaler.fitted
    x = np.array([[1.0, -2.0, 3.0]])
    np.testing.assert_array_equal(scaler.transform(x), x)
    np.testing.assert_array_equal(scaler.inverse_transform(torch.tensor(x)).numpy(), x)


def test_partial_fit_rejects_bad_data_without_changing_state():
    scaler = RunningScaler(2).fit(np.array([[1.0, 2.0], [3.0, 4.0]]))
    before = scaler.state_dict()
    for bad in (np.array([[np.nan, 1.0]]), np.array([[np.inf, 1.0]]), np.zeros((3, 3))):
        with pytest.raises(ValueError):
            scaler.partial_fit(bad)
    after = scaler.state_dict()
    for k in before:
        assert torch.equal(before[k], after[k])
    with pytest.raises(ValueError):
        scaler.transform(np.zeros((4, 3)))
    with pytest.raises(ValueError):
        scaler.transform(torch.zeros(4, 3))


def test_state_dict_round_trip_weights_only():
    x = _data()
    scaler = RunningScaler(5).fit(x)
    buf = io.BytesIO()
    torch.save(scaler.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    clone = RunningScaler(5)
    clone.load_state_dict(state)
    assert clone.count == scaler.count
    np.testing.assert_array_equal(clone.mean, scaler.mean)
    np.testing.assert_array_equal(clone.std, scaler.std)
    np.testing.assert_array_equal(clone.transform(x), scaler.transform(x))
    # statistics keep accumulating correctly after a restore
    more = _data(seed=3)
    clone.partial_fit(more)
    ref = StandardScaler().fit(np.vstack([x, more]))
    np.testing.assert_allclose(clone.var, ref.var_, rtol=1e-9)
    assert RunningScaler.from_state_dict(state).dim == 5


def test_load_state_dict_checks_shapes_and_values():
    state = RunningScaler(3).fit(np.eye(3)).state_dict()
    with pytest.raises(ConfigError, match='mean'):
        RunningScaler(4).load_state_dict(state)
    with pytest.raises(ConfigError, match='m2'):
        RunningScaler(3).load_state_dict({k: v for k, v in state.items() if k != 'm2'})
    bad = dict(state, mean=torch.tensor([0.0, float('nan'), 0.0], dtype=torch.float64))
    with pytest.raises(ConfigError):
        RunningScaler(3).load_state_dict(bad)
    with pytest.raises(ConfigError, match='count'):
        RunningScaler(3).load_state_dict(dict(state, count=torch.tensor(-1)))
    with pytest.raises(ConfigError):
        RunningScaler(0)
