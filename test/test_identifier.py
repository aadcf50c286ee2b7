"""DualIdentifier: per-joint switching with hysteresis, known answers on generated errors."""
import numpy as np
import pytest

from invdyn_ros.errors import ConfigError
from invdyn_ros.identifier import DualIdentifier


def _stream(n=5, steps=600, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(steps) * 0.01
    tau = np.sin(t[:, None] * (1.0 + np.arange(n))) * 10.0
    return rng, tau


def test_crippled_joints_follow_other_network():
    n = 5
    rng, tau = _stream(n)
    ident = DualIdentifier(n, window=100, hysteresis=0.1, names=('lstm', 'gru'))
    bad = np.array([False, True, False, True, False])
    for k in range(tau.shape[0]):
        good_a = tau[k] + rng.normal(0, 0.03, n)  # a slightly better where it works
        pred_b = tau[k] + rng.normal(0, 0.05, n)
        pred_a = good_a + np.where(bad, rng.normal(0, 5.0, n), 0.0)  # network a broken on {1, 3}
        out = ident.select(pred_a, pred_b)
        ident.update(pred_a, pred_b, tau[k])
    np.testing.assert_array_equal(out.active, bad.astype(int))
    np.testing.assert_array_equal(out.torque[bad], pred_b[bad])
    np.testing.assert_array_equal(out.torque[~bad], pred_a[~bad])
    assert np.all(out.std_a[bad] > 10 * out.std_b[bad])
    assert ident.names == ('lstm', 'gru')
    # uncertainty is at least the active network's spread and at least the disagreement
    assert np.all(out.uncertainty >= np.abs(pred_a - pred_b) - 1e-12)


def test_keeps_primary_until_enough_samples():
    ident = DualIdentifier(2, window=50, min_samples=10)
    for _ in range(9):
        ident.update([5.0, 5.0], [0.0, 0.0], [0.0, 0.0])  # network b perfect, a awful
    assert list(ident.active) == [0, 0]
    ident.update([5.0, 5.0], [0.0, 0.0], [0.0, 0.0])
    assert list(ident.active) == [1, 1]


def test_hysteresis_reduces_switching_between_equal_networks():
    n, steps = 3, 3000

    def count_switches(h):
        rng = np.random.default_rng(1)
        ident = DualIdentifier(n, window=50, hysteresis=h)
        for _ in range(steps):
            tau = rng.normal(0, 1, n)
            ident.update(tau + rng.normal(0, 1.0, n), tau + rng.normal(0, 1.02, n), tau)
        return ident.counters['switches']

    no_h, with_h = count_switches(0.0), count_switches(0.2)
    assert no_h > 50
    assert with_h * 10 < no_h


def test_bias_counts_as_error():
    """A constant offset has zero centered std but is a bad feedforward: RMS must catch it."""
    ident = DualIdentifier(1, window=20)
    rng = np.random.default_rng(2)
    for _ in range(40):
        tau = rng.normal(0, 1, 1)
        ident.update(tau + 3.0, tau + rng.normal(0, 0.1, 1), tau)
    assert ident.active[0] == 1


def test_rejects_bad_samples_without_raising():
    ident = DualIdentifier(2, window=10, min_samples=1)
    assert not ident.update([np.nan, 0.0], [0.0, 0.0], [0.0, 0.0])
    assert not ident.update([0.0, 0.0], [0.0, np.inf], [0.0, 0.0])
    assert not ident.update([0.0, 0.0, 0.0], [0.0, 0.0], [0.0, 0.0])
    assert not ident.update(None, [0.0, 0.0], [0.0, 0.0])
    assert ident.counters['rejected'] == 4
    assert ident.count == 0
    assert ident.update([1.0, 1.0], [0.0, 0.0], [1.0, 1.0])
    assert np.isfinite(ident.std_a).all() and np.isfinite(ident.std_b).all()


def test_select_falls_back_from_non_finite_prediction():
    ident = DualIdentifier(2)
    out = ident.select([np.nan, 1.0], [2.0, 3.0])
    assert list(out.active) == [1, 0]
    np.testing.assert_array_equal(out.torque, [2.0, 1.0])
    assert np.isfinite(out.uncertainty).all()
    single = ident.select([1.0, 2.0], None)
    np.testing.assert_array_equal(single.torque, [1.0, 2.0])
    assert list(single.active) == [0, 0]


def test_window_rolls():
    ident = DualIdentifier(1, window=10, min_samples=1)
    for _ in range(10):
        ident.update([10.0], [0.0], [0.0])
    assert ident.std_a[0] == pytest.approx(10.0)
    for _ in range(10):
        ident.update([1.0], [0.0], [0.0])
    assert ident.std_a[0] == pytest.approx(1.0)  # old errors have left the window
    ident.reset()
    assert ident.count == 0 and list(ident.active) == [0]


@pytest.mark.parametrize('kwargs', [dict(window=1), dict(hysteresis=1.0), dict(hysteresis=-0.1),
                                    dict(names=('a',)), dict(min_samples=0)])
def test_bad_config_raises_config_error(kwargs):
    with pytest.raises(ConfigError):
        DualIdentifier(2, **kwargs)
