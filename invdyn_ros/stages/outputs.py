"""What the pipeline hands out: :class:`Published` (the fast path's part of a sample),
:class:`Output` (the complete sample) and :class:`BatchOutput` (many samples as arrays).

Plain frozen dataclasses without behaviour beyond conversion, so the streaming chain
(``pipeline``) and the batch chain (``replay``) share them without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ['Published', 'Output', 'BatchOutput']


@dataclass(frozen=True)
class Published:
    """What ``Pipeline.process(..., defer=True)`` returns when the torque can be published: the
    fields of :class:`Output` known then (same meaning). ``Pipeline.finish()`` returns the
    complete :class:`Output`; a Published is never changed afterwards."""

    stamp: float
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    tau: np.ndarray | None
    torque: np.ndarray
    active: np.ndarray
    ready: bool
    recent_nmse: float


@dataclass(frozen=True)
class Output(Published):
    """One published sample, complete. Arrays are (n,) float64 in joint order, all finite.

    ``q, qd, qdd``: the filtered state the prediction is for (delayed by the filter, see
    ``estimation``); ``tau``: the filtered, scaled measured torque (None if the sample had none);
    ``torque``: the selected, clamped prediction; ``predictions``: every network's raw prediction
    (None where a network had no output yet); ``active``: index into ``network_names`` per joint;
    ``std_a`` / ``std_b``: the networks' rolling error spreads, ``uncertainty``:
    ``max(std_active, |pred_a - pred_b|)`` (N m). ``ready`` / ``recent_nmse`` as of before this
    sample.
    """

    predictions: dict
    std_a: np.ndarray
    std_b: np.ndarray
    uncertainty: np.ndarray


@dataclass(frozen=True, eq=False)
class BatchOutput:
    """:meth:`Pipeline.process_arrays`' result: row i = input sample i, for N samples.

    ``valid`` (N,) bool: sample i has an output (``process`` would have returned an Output). The
    other arrays hold that Output's fields (see :class:`Output`) in valid rows and NaN (``active``:
    -1, ``has_tau`` / ``ready``: False) elsewhere; ``tau`` is NaN where the sample had no effort
    (``has_tau`` False); ``predictions`` maps every network name to ``(N, n)`` (NaN where that
    network had no output).
    """

    valid: np.ndarray
    stamp: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    tau: np.ndarray
    has_tau: np.ndarray
    torque: np.ndarray
    predictions: dict
    active: np.ndarray
    std_a: np.ndarray
    std_b: np.ndarray
    uncertainty: np.ndarray
    ready: np.ndarray
    recent_nmse: np.ndarray

    def __len__(self) -> int:
        return int(self.valid.shape[0])

    def output(self, i: int) -> Output | None:
        """Sample i as the :class:`Output` ``process`` returns (None if not valid)."""
        if not self.valid[i]:
            return None
        preds = {name: (p[i].copy() if np.isfinite(p[i]).all() else None)
                 for name, p in self.predictions.items()}
        return Output(stamp=float(self.stamp[i]), q=self.q[i].copy(), qd=self.qd[i].copy(),
                      qdd=self.qdd[i].copy(),
                      tau=self.tau[i].copy() if self.has_tau[i] else None,
                      torque=self.torque[i].copy(), predictions=preds,
                      active=self.active[i].copy(), std_a=self.std_a[i].copy(),
                      std_b=self.std_b[i].copy(), uncertainty=self.uncertainty[i].copy(),
                      ready=bool(self.ready[i]), recent_nmse=float(self.recent_nmse[i]))

    def outputs(self) -> list[Output | None]:
        return [self.output(i) for i in range(len(self))]
