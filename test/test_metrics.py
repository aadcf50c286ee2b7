"""Known-answer tests of mse / nmse / summary."""
import json

import numpy as np
import pytest
import torch

from invdyn_ros.metrics import mse, nmse, summary


def test_mse_hand_computed():
    y_true = np.array([[0.0, 1.0], [2.0, 3.0]])
    y_pred = np.array([[1.0, 1.0], [2.0, 0.0]])
    # joint 0: (1^2 + 0^2)/2 = 0.5; joint 1: (0^2 + 3^2)/2 = 4.5
    np.testing.assert_allclose(mse(y_true, y_pred), [0.5, 4.5])


def test_nmse_hand_computed():
    y_true = np.array([[0.0, 1.0], [2.0, 3.0]])
    y_pred = np.array([[1.0, 1.0], [2.0, 0.0]])
    np.testing.assert_allclose(nmse(y_true, y_pred, [10.0, -4.0], [2.0, 3.0]), [0.5 / 4, 4.5 / 9])


def test_train_mean_predictor_scores_one_and_perfect_scores_zero():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 4)) * [1.0, 10.0, 0.1, 100.0] + [0.0, 5.0, -1.0, 40.0]
    mean, std = train.mean(0), train.std(0)  # population std, as RunningScaler
    mean_predictor = np.broadcast_to(mean, train.shape)
    np.testing.assert_allclose(nmse(train, mean_predictor, mean, std), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(nmse(train, train, mean, std), 0.0)
    np.testing.assert_array_equal(mse(train, train), 0.0)


def test_summary_is_plain_json():
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    p = y + [[1.0, 0.0], [1.0, 2.0]]
    s = summary(y, p, [0.0, 0.0], [1.0, 2.0])
    assert s == {'mse': [1.0, 2.0], 'nmse': [1.0, 0.5], 'nmse_mean': 0.75}
    json.dumps(s)
    assert isinstance(s['nmse_mean'], float)


def test_accepts_torch_tensors():
    y = torch.tensor([[1.0, 2.0]], requires_grad=True)
    np.testing.assert_allclose(mse(y, y * 2), [1.0, 4.0])


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise(bad):
    y = np.zeros((3, 2))
    p = y.copy()
    p[1, 0] = bad
    with pytest.raises(ValueError, match='non-finite'):
        mse(y, p)
    with pytest.raises(ValueError, match='non-finite'):
        nmse(y, p, [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match='non-finite'):
        summary(p, y, [0.0, 0.0], [1.0, 1.0])


def test_shape_and_statistics_validation():
    y = np.zeros((3, 2))
    with pytest.raises(ValueError):
        mse(y, np.zeros((3, 3)))
    with pytest.raises(ValueError):
        mse(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError):
        mse(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match='train_std'):
        nmse(y, y, [0.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match='train_mean'):
        nmse(y, y, [0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match='train_std'):
        nmse(y, y, [0.0, 0.0], [1.0, np.nan])
