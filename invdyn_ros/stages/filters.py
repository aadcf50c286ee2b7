"""The estimator's filter: its parameters (:class:`FilterConfig`), the Butterworth design of one
stage at a sample rate, why none can be designed, the delay of the whole causal chain, and the one
way the filter is run (:func:`filter_inplace`, shared by the one-sample and many-sample forms,
:mod:`invdyn_ros.stages.estimation` and :mod:`invdyn_ros.stages.estimation_batch`, which run the
chain)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.signal

from invdyn_ros.errors import ConfigError

__all__ = ['FilterConfig', 'cutoff_error', 'design_filter', 'filter_delay_s', 'filter_inplace']


@dataclass(frozen=True)
class FilterConfig:
    """Parameters of the estimator.

    order / cutoff_hz: Butterworth low-pass applied per stage (two stages in the causal chain).
    rate_hz: nominal sample rate; None measures it (robust median of the first 20 stamp
    differences) and keeps monitoring it (see ``RATE_BLOCK``).
    max_gap_s: a longer stamp difference resets the filters.
    max_abs_*: samples beyond these magnitudes (rad or m, rad/s or m/s, N m or N) are rejected.
    """

    order: int = 2
    cutoff_hz: float = 30.0
    rate_hz: float | None = None
    max_gap_s: float = 0.05
    max_abs_position: float = 100.0
    max_abs_velocity: float = 100.0
    max_abs_effort: float = 1e4

    def validate(self) -> 'FilterConfig':
        """Raise :class:`ConfigError` naming the first invalid parameter; return self."""
        if isinstance(self.order, bool) or not isinstance(self.order, (int, np.integer)) \
                or not 1 <= int(self.order) <= 8:
            raise ConfigError(f'filter order must be an integer in 1..8, got {self.order!r}')
        for name in ('cutoff_hz', 'max_gap_s', 'max_abs_position', 'max_abs_velocity',
                     'max_abs_effort'):
            value = getattr(self, name)
            if not _positive_finite(value):
                raise ConfigError(f'{name} must be a finite number > 0, got {value!r}')
        if self.rate_hz is not None:
            if not _positive_finite(self.rate_hz):
                raise ConfigError(f'rate_hz must be None or a finite number > 0, got {self.rate_hz!r}')
            if self.cutoff_hz >= 0.5 * self.rate_hz:
                raise ConfigError(f'cutoff_hz ({self.cutoff_hz}) must be below the Nyquist frequency '
                                  f'rate_hz / 2 ({0.5 * self.rate_hz})')
        return self


def _positive_finite(value: object) -> bool:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v > 0.0 and not isinstance(value, bool)


def cutoff_error(config: FilterConfig, rate_hz: float) -> str | None:
    """Why no filter can be designed for ``rate_hz`` (None: it can): the cutoff must be below the
    Nyquist frequency. The message names the node parameter ``filter_cutoff_hz``."""
    if config.cutoff_hz < 0.5 * rate_hz:
        return None
    return (f'filter_cutoff_hz ({config.cutoff_hz:g} Hz) must be below the Nyquist frequency of '
            f'the joint state rate ({rate_hz:.4g} Hz / 2 = {0.5 * rate_hz:.4g} Hz)')


def design_filter(config: FilterConfig, rate_hz: float) -> tuple[np.ndarray, float]:
    """The Butterworth ``sos`` of one stage at ``rate_hz`` and its cutoff.

    Raises :class:`ConfigError` when the cutoff is at or above the Nyquist frequency of
    ``rate_hz`` (:func:`cutoff_error`; never silently moved: the user asked for that cutoff).
    """
    if not _positive_finite(rate_hz):
        raise ConfigError(f'rate_hz must be a finite number > 0, got {rate_hz!r}')
    problem = cutoff_error(config, float(rate_hz))
    if problem is not None:
        raise ConfigError(problem)
    cutoff = float(config.cutoff_hz)
    sos = scipy.signal.butter(int(config.order), cutoff, btype='low', output='sos', fs=float(rate_hz))
    return np.ascontiguousarray(sos, dtype=np.float64), cutoff


def filter_delay_s(config: FilterConfig, rate_hz: float) -> float:
    """Low-frequency group delay (s) of the whole causal chain, equal for every output channel.

    Two Butterworth stages (group delay of one stage evaluated at 0.1 % of the cutoff) plus the half
    sample of the backward difference / two-tap mean between them. For velocities derived from
    positions add another half sample to qd and qdd.
    """
    sos, cutoff = design_filter(config, rate_hz)
    b, a = scipy.signal.sos2tf(sos)
    _, gd = scipy.signal.group_delay((b, a), w=[1e-3 * cutoff], fs=float(rate_hz))
    return float((2.0 * gd[0] + 0.5) / float(rate_hz))


def _load_kernel():
    """scipy's compiled sosfilt kernel, if present and equal to the public ``sosfilt`` here.

    ``scipy.signal.sosfilt`` spends ~50 us per call on argument handling for a (C, 1) input; the
    kernel it calls takes ~2 us and filters in place. It is private API, so it is used only after
    a self-check against the public function; otherwise ``filter_inplace`` falls back to it.
    """
    try:
        from scipy.signal._sosfilt import _sosfilt as kernel  # noqa: PLC0415
        rng = np.random.default_rng(0)
        sos = scipy.signal.butter(3, 0.2, output='sos')
        x = rng.normal(size=(3, 5))
        zi = rng.normal(size=(sos.shape[0], 3, 2))
        y_ref, z_ref = scipy.signal.sosfilt(sos, x, axis=1, zi=zi)
        x_k = np.ascontiguousarray(x)
        z_k = np.ascontiguousarray(np.moveaxis(zi, 0, 1))
        kernel(sos, x_k, z_k)
        if np.allclose(x_k, y_ref, rtol=1e-12, atol=1e-12) and \
                np.allclose(z_k, np.moveaxis(z_ref, 1, 0), rtol=1e-12, atol=1e-12):
            return kernel
    except Exception:  # noqa: BLE001 - any failure just means: use the public function
        pass
    return None


_SOSFILT_KERNEL = _load_kernel()


def filter_inplace(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    """``x`` (C, k) and ``zi`` (C, n_sections, 2), both C-contiguous float64, filtered in place.

    Same result as ``scipy.signal.sosfilt(sos, x, axis=1, zi=zi moved to (n_sections, C, 2))``.
    ``update``'s numpy path (one sample) and ``update_many`` (a whole run) both filter through
    it, so the two forms cannot filter differently; the compiled per-sample step
    (``kernels.filter_step``) is tested bit for bit against the path through it.
    """
    if _SOSFILT_KERNEL is not None:
        _SOSFILT_KERNEL(sos, x, zi)
        return
    y, zf = scipy.signal.sosfilt(sos, x, axis=1, zi=np.moveaxis(zi, 0, 1))
    x[...] = y
    zi[...] = np.moveaxis(zf, 1, 0)
