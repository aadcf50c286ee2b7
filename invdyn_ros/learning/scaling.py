"""Online standardisation of features and torques (``StandardScaler`` semantics, fitted in chunks).

The learner sees data as a stream, so the mean and variance are updated chunk by chunk with the
parallel algorithm of Chan, Golub & LeVeque (1979) in float64: merging the statistics of a new chunk
into the running ones is exact up to rounding, so after any sequence of ``partial_fit`` calls the
result equals ``sklearn.preprocessing.StandardScaler`` fitted on the concatenation (population
variance, ``ddof=0``).

Differences from scikit-learn, on purpose:

- ``std`` has a floor (default ``1e-6``) instead of being replaced by 1, so a constant channel maps
  to 0 rather than dividing by zero, while the scale of a tiny but real signal is kept.
- An unfitted scaler (``count == 0``) is the identity (mean 0, std 1), so a predictor built before any
  data arrived passes values through unchanged instead of raising in the control loop.
- ``transform`` / ``inverse_transform`` also accept torch tensors (any dtype/device) and return a
  tensor of the same dtype and device, so the models' hot path never round-trips through numpy.
  The arithmetic is then done in that dtype: float32 is exact enough while ``|mean| / std`` is far
  below ~1e5 (true for joint angles, velocities and torques in SI units); pass float64 otherwise.

``transform`` does not check finiteness (it sits on the hot path; NaN in gives NaN out): callers
validate inputs and outputs. ``partial_fit`` does check, because one NaN would poison the statistics
forever.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from invdyn_ros.errors import ConfigError

ArrayOrTensor = np.ndarray | torch.Tensor

DEFAULT_STD_FLOOR = 1e-6


class RunningScaler:
    """Running per-feature mean and population variance; ``(x - mean) / std`` on the last axis."""

    def __init__(self, dim: int, std_floor: float = DEFAULT_STD_FLOOR) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ConfigError(f'RunningScaler dim must be a positive integer, got {dim!r}')
        if not (np.isfinite(std_floor) and std_floor > 0):
            raise ConfigError(f'RunningScaler std_floor must be a positive number, got {std_floor!r}')
        self.dim = int(dim)
        self.std_floor = float(std_floor)
        self.reset()

    # ------------------------------------------------------------------ fitting
    def reset(self) -> None:
        """Forget all data (back to the identity transform)."""
        self._count = 0
        self._mean = np.zeros(self.dim, dtype=np.float64)
        self._m2 = np.zeros(self.dim, dtype=np.float64)  # sum of squared deviations from the mean
        self._torch_cache: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def partial_fit(self, x: Any) -> 'RunningScaler':
        """Merge a chunk ``x`` of shape ``(k, dim)`` (or any leading dims, feature last).

        Raises ValueError on a wrong feature width or any non-finite value (nothing is updated then).
        An empty chunk is a no-op.
        """
        a = _as_float64(x)
        if a.ndim == 0 or a.shape[-1] != self.dim:
            raise ValueError(f'partial_fit expects (..., {self.dim}) data, got shape {a.shape}')
        a = a.reshape(-1, self.dim)
        k = a.shape[0]
        if k == 0:
            return self
        if not np.all(np.isfinite(a)):
            raise ValueError('partial_fit got non-finite values; filter them out before fitting')
        mean_b = a.mean(axis=0)
        m2_b = np.square(a - mean_b).sum(axis=0)
        n_a = self._count
        n = n_a + k
        delta = mean_b - self._mean
        # Chan et al.: exact merge of (n_a, mean_a, M2_a) with (k, mean_b, M2_b).
        self._mean = self._mean + delta * (k / n)
        self._m2 = self._m2 + m2_b + np.square(delta) * (n_a * k / n)
        self._count = n
        self._torch_cache.clear()
        return self

    def fit(self, x: Any) -> 'RunningScaler':
        """``reset()`` then ``partial_fit(x)``."""
        self.reset()
        return self.partial_fit(x)

    # ------------------------------------------------------------------ statistics
    @property
    def count(self) -> int:
        """Number of rows fitted so far."""
        return self._count

    @property
    def fitted(self) -> bool:
        return self._count > 0

    @property
    def mean(self) -> np.ndarray:
        """Per-feature mean (float64 copy); zeros before any data."""
        return self._mean.copy()

    @property
    def var(self) -> np.ndarray:
        """Per-feature population variance (``ddof=0``, like StandardScaler); ones before any data."""
        if self._count == 0:
            return np.ones(self.dim, dtype=np.float64)
        return np.maximum(self._m2 / self._count, 0.0)

    @property
    def std(self) -> np.ndarray:
        """``sqrt(var)`` floored at ``std_floor`` so constant channels never divide by zero."""
        return np.maximum(np.sqrt(self.var), self.std_floor)

    # ------------------------------------------------------------------ transforms
    def transform(self, x: ArrayOrTensor) -> ArrayOrTensor:
        """``(x - mean) / std`` over the last axis. numpy in -> float64 array; tensor in -> tensor."""
        if isinstance(x, torch.Tensor):
            mean, std = self._torch_stats(x)
            return (x - mean) / std
        a = self._checked_array(x)
        return (a - self._mean) / self.std

    def inverse_transform(self, x: ArrayOrTensor) -> ArrayOrTensor:
        """``x * std + mean`` over the last axis (the inverse of :meth:`transform`)."""
        if isinstance(x, torch.Tensor):
            mean, std = self._torch_stats(x)
            return x * std + mean
        a = self._checked_array(x)
        return a * self.std + self._mean

    def _checked_array(self, x: Any) -> np.ndarray:
        a = _as_float64(x)
        if a.ndim == 0 or a.shape[-1] != self.dim:
            raise ValueError(f'expected {self.dim} features on the last axis, got shape {a.shape}')
        return a

    def _torch_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mean/std as tensors of ``x``'s dtype and device, cached until the statistics change."""
        if x.dim() == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f'expected {self.dim} features on the last axis, got shape {tuple(x.shape)}')
        if not x.is_floating_point():
            raise ValueError(f'expected a floating-point tensor, got {x.dtype}')
        key = (x.dtype, x.device)
        stats = self._torch_cache.get(key)
        if stats is None:
            stats = (torch.as_tensor(self._mean, dtype=x.dtype, device=x.device),
                     torch.as_tensor(self.std, dtype=x.dtype, device=x.device))
            self._torch_cache[key] = stats
        return stats

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only, so checkpoints load with ``torch.load(weights_only=True)``."""
        return {
            'count': torch.tensor(self._count, dtype=torch.int64),
            'mean': torch.from_numpy(self._mean.copy()),
            'm2': torch.from_numpy(self._m2.copy()),
            'std_floor': torch.tensor(self.std_floor, dtype=torch.float64),
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; ConfigError on missing keys, wrong shapes or bad values."""
        if not isinstance(d, Mapping):
            raise ConfigError(f'scaler state must be a dict, got {type(d).__name__}')
        missing = [k for k in ('count', 'mean', 'm2') if k not in d]
        if missing:
            raise ConfigError(f'scaler state is missing {missing}')
        try:
            mean = _as_float64(d['mean'])
            m2 = _as_float64(d['m2'])
            count_a = _as_float64(d['count'])
        except ValueError as exc:
            raise ConfigError(f'scaler state is not numeric: {exc}') from exc
        for name, value in (('mean', mean), ('m2', m2)):
            if value.shape != (self.dim,):
                raise ConfigError(
                    f'scaler state {name!r} has shape {value.shape}, expected ({self.dim},)')
            if not np.all(np.isfinite(value)):
                raise ConfigError(f'scaler state {name!r} has non-finite values')
        if count_a.size != 1 or not np.isfinite(count_a).all() or count_a.item() < 0 \
                or count_a.item() != int(count_a.item()):
            raise ConfigError(f'scaler state count must be a non-negative integer, got {count_a}')
        if np.any(m2 < 0):
            raise ConfigError("scaler state 'm2' must be non-negative")
        std_floor = self.std_floor
        if 'std_floor' in d:
            try:
                floor_a = _as_float64(d['std_floor']).reshape(-1)
            except ValueError as exc:
                raise ConfigError(f'scaler state std_floor is not numeric: {exc}') from exc
            std_floor = float(floor_a[0]) if floor_a.size == 1 else float('nan')
            if not (np.isfinite(std_floor) and std_floor > 0):
                raise ConfigError(f'scaler state std_floor must be positive, got {std_floor}')
        self.std_floor = std_floor
        self._count = int(count_a.item())
        self._mean = mean.copy()
        self._m2 = m2.copy()
        self._torch_cache.clear()

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> 'RunningScaler':
        """A scaler whose ``dim`` is taken from ``d['mean']``."""
        if not isinstance(d, Mapping) or 'mean' not in d:
            raise ConfigError('scaler state must be a dict with a mean')
        try:
            mean = _as_float64(d['mean'])
        except ValueError as exc:
            raise ConfigError(f'scaler state mean is not numeric: {exc}') from exc
        if mean.ndim != 1 or mean.size < 1:
            raise ConfigError(f'scaler state mean must be 1-D, got shape {mean.shape}')
        scaler = cls(mean.size)
        scaler.load_state_dict(d)
        return scaler

    def __repr__(self) -> str:
        return f'RunningScaler(dim={self.dim}, count={self._count})'


def _as_float64(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'expected numeric data, got {type(x).__name__}') from exc
