"""Baselines of the offline evaluator: known answers on generated data."""
import numpy as np
import pytest

from invdyn_ros.errors import ConfigError
from invdyn_ros.offline.baselines import GPBaseline, NaiveBaseline, PrequentialGP, build_baseline


def _smooth_data(n, seed=0):
    """y0 depends on x0 and x1 only (x2 is irrelevant); y1 is linear in x1."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 3))
    Y = np.stack([np.sin(1.5 * X[:, 0]) + 0.3 * X[:, 1] ** 2, 2.0 * X[:, 1] - 1.0], axis=1)
    return X, Y


def test_naive_predicts_the_training_mean_and_ignores_bad_rows():
    X = np.zeros((4, 2))
    Y = np.array([[1.0, 10.0], [3.0, 20.0], [np.nan, 0.0], [5.0, 30.0]])
    model = NaiveBaseline().fit(X, Y)
    np.testing.assert_allclose(model.mean_, [3.0, 20.0])
    pred = model.predict(np.ones((3, 2)))
    assert pred.shape == (3, 2)
    np.testing.assert_allclose(pred, [[3.0, 20.0]] * 3)


def test_naive_rejects_shape_mismatch_and_predict_before_fit():
    with pytest.raises(ValueError):
        NaiveBaseline().fit(np.zeros((3, 2)), np.zeros((4, 1)))
    with pytest.raises(RuntimeError):
        NaiveBaseline().predict(np.zeros((1, 2)))


def test_gp_learns_a_smooth_function_and_finds_the_irrelevant_input():
    X, Y = _smooth_data(400)
    Xt, Yt = _smooth_data(200, seed=1)
    gp = GPBaseline(n_samples=200, opt_samples=120, seed=0).fit(X, Y)
    assert gp.n_fit_ == 200                     # subsampled to the stated size
    pred = gp.predict(Xt)
    assert pred.shape == Yt.shape and np.isfinite(pred).all()
    nmse = np.mean((pred - Yt) ** 2, axis=0) / np.var(Yt, axis=0)
    assert np.all(nmse < 0.01), nmse
    # ARD: for joint 0 the irrelevant input x2 gets a much longer length scale than x0 and x1
    ls = gp.models_[0].kernel_.k1.k2.length_scale
    assert ls[2] > 5 * max(ls[0], ls[1]), ls


def test_gp_subsample_is_seeded_and_uses_all_points_when_few():
    X, Y = _smooth_data(300)
    a = GPBaseline(n_samples=50, opt_samples=30, seed=3, optimize=False).fit(X, Y)
    b = GPBaseline(n_samples=50, opt_samples=30, seed=3, optimize=False).fit(X, Y)
    np.testing.assert_array_equal(a.predict(X[:20]), b.predict(X[:20]))
    small = GPBaseline(n_samples=1000, optimize=False).fit(X[:40], Y[:40])
    assert small.n_fit_ == 40


def test_gp_handles_a_constant_input_and_nonfinite_rows():
    X, Y = _smooth_data(120)
    X[:, 2] = 0.7                               # a joint that never moved
    X[5, 0] = np.nan                            # a bad row is dropped from the fit
    gp = GPBaseline(n_samples=100, opt_samples=60).fit(X, Y)
    pred = gp.predict(np.vstack([X[:3], [[np.nan, 0.0, 0.0]]]))
    assert np.isfinite(pred[:3]).all()
    assert np.isnan(pred[3]).all()              # non-finite input: no prediction, not garbage


@pytest.mark.parametrize('kwargs', [{'n_samples': 1}, {'n_samples': 2.5}, {'opt_samples': 0},
                                    {'max_iter': 0}, {'n_samples': True}])
def test_gp_rejects_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        GPBaseline(**kwargs)


def test_prequential_gp_predicts_before_learning_and_refits_on_schedule():
    X, Y = _smooth_data(250)
    gp = PrequentialGP(2, n_samples=60, refit_every=50, window=100, opt_samples=40)
    out = gp.run(X, Y)
    assert out.shape == Y.shape and np.isfinite(out).all()
    # before the first fit: the running mean of what was seen (zeros for the very first sample)
    np.testing.assert_allclose(out[0], 0.0)
    np.testing.assert_allclose(out[1], Y[0])
    np.testing.assert_allclose(out[49], Y[:49].mean(axis=0))
    assert gp.fits == 5                         # after samples 50, 100, ..., 250
    assert gp.optimizations == 3                # at 50, 100 and 200 samples seen (doubling)
    # once fitted it beats the running mean on the last block
    last = slice(200, 250)
    err_gp = np.mean((out[last] - Y[last]) ** 2)
    err_mean = np.mean((Y[:200].mean(axis=0) - Y[last]) ** 2)
    assert err_gp < 0.2 * err_mean


def test_prequential_gp_run_equals_the_per_sample_loop():
    X, Y = _smooth_data(130)
    a = PrequentialGP(2, n_samples=40, refit_every=30, opt_samples=30, seed=1)
    b = PrequentialGP(2, n_samples=40, refit_every=30, opt_samples=30, seed=1)
    batched = a.run(X, Y)
    looped = np.empty_like(batched)
    for i in range(len(X)):
        looped[i] = b.predict_one(X[i])
        b.learn_one(X[i], Y[i])
    np.testing.assert_allclose(batched, looped, rtol=1e-9, atol=1e-9)


def test_prequential_gp_skips_bad_samples():
    gp = PrequentialGP(1, n_samples=10, refit_every=5)
    gp.learn_one([0.0, np.inf], [1.0])
    gp.learn_one([0.0, 0.0], [np.nan])
    gp.learn_one([0.0, 0.0], [1.0, 2.0])        # wrong joint count
    assert gp._count == 0
    np.testing.assert_allclose(gp.predict_one([0.0, 0.0]), [0.0])


def test_build_baseline():
    assert isinstance(build_baseline('naive'), NaiveBaseline)
    assert build_baseline('gp', n_samples=77).n_samples == 77
    with pytest.raises(ConfigError):
        build_baseline('svm')
