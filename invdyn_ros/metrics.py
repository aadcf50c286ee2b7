"""Error measures for torque predictions, per joint.

``nmse`` follows Huang et al. 2024: the MSE of torques that were standardised with the *training*
mean and std. Because both the measurement and the prediction are shifted by the same training mean,
the mean cancels and ``nmse = mse / train_std**2`` per joint. ``train_std`` is the *population*
standard deviation (``ddof=0``, as ``RunningScaler.std`` and ``StandardScaler``), so predicting the
training mean on the training set scores exactly 1.0, a perfect prediction 0.0.

Inputs are ``(N, n)`` arrays (N samples, n joints; torch tensors are accepted too).
Non-finite values raise ValueError: a NaN score would silently hide a broken model, and NaN
torques must never reach a robot, so they must be seen.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _array(x: Any) -> np.ndarray:
    if hasattr(x, 'detach'):  # a torch tensor, possibly requiring grad or on another device
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _array(y_true)
    p = _array(y_pred)
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f'y_true must be (N>=1, n>=1), got shape {t.shape}')
    if p.shape != t.shape:
        raise ValueError(f'y_pred shape {p.shape} does not match y_true shape {t.shape}')
    if not np.all(np.isfinite(t)):
        raise ValueError('y_true contains non-finite values')
    if not np.all(np.isfinite(p)):
        bad = int(np.count_nonzero(~np.isfinite(p)))
        raise ValueError(f'y_pred contains {bad} non-finite value(s)')
    return t, p


def _train_stats(train_mean: Any, train_std: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    m = _array(train_mean)
    s = _array(train_std)
    for name, v in (('train_mean', m), ('train_std', s)):
        if v.shape != (n,):
            raise ValueError(f'{name} must have shape ({n},), got {v.shape}')
        if not np.all(np.isfinite(v)):
            raise ValueError(f'{name} contains non-finite values')
    if np.any(s <= 0):
        raise ValueError(f'train_std must be positive, got {s}')
    return m, s


def mse(y_true: Any, y_pred: Any) -> np.ndarray:
    """Mean squared error per joint, shape ``(n,)``, in the squared units of the torques."""
    t, p = _pair(y_true, y_pred)
    return np.mean(np.square(p - t), axis=0)


def nmse(y_true: Any, y_pred: Any, train_mean: Any, train_std: Any) -> np.ndarray:
    """MSE of ``(y - train_mean) / train_std`` per joint, shape ``(n,)``; dimensionless.

    1.0 is the score of always predicting the training mean (on data distributed like the training
    set); 0.0 is perfect.
    """
    t, p = _pair(y_true, y_pred)
    m, s = _train_stats(train_mean, train_std, t.shape[1])
    return np.mean(np.square((p - m) / s - (t - m) / s), axis=0)


def summary(y_true: Any, y_pred: Any, train_mean: Any, train_std: Any) -> dict[str, Any]:
    """``{'mse': [n floats], 'nmse': [n floats], 'nmse_mean': float}`` (plain Python, JSON-ready)."""
    e = mse(y_true, y_pred)
    ne = nmse(y_true, y_pred, train_mean, train_std)
    return {'mse': e.tolist(), 'nmse': ne.tolist(), 'nmse_mean': float(np.mean(ne))}
