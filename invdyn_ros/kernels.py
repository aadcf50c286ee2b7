"""Compiled per-sample kernels for the control loop's fast path (numba), with a numpy fallback.

Why: in the node, the fast path runs right after the thread wakes up for a message, with caches
that the other processes on the core have evicted. There, each small numpy call costs 2-3x what it
costs in a warm loop (measured in the node under ``bench/latency.py``: the LSTM read-out 26 µs
vs 14 µs warm, the estimator 43 µs vs 14 µs), and the read-out is ~30 numpy calls. One compiled
call per network does the same arithmetic with one dispatch and a small, contiguous footprint.

Kernels: :func:`recurrent_readout` (a predictor's scaling + every recurrent layer + head, one
sample), :func:`in_range` and :func:`filter_step` (the estimator's range check and, once primed,
its whole per-sample filter chain; no fastmath, bit-identical to the numpy / scipy path).

numba is optional: :data:`AVAILABLE` says whether it imported, and the kernels are ``None``
otherwise; callers keep their numpy path for that case (``Predictor`` and ``StreamingEstimator``
do). The kernels are compiled on first use (~1 s), so callers warm them up at construction
(:func:`warm_up`), never on the first message.

Floating point: the read-out's ``fastmath`` is limited to reassociation and contraction (vectorized
dot products, FMA); NaN/Inf semantics are kept, so finiteness checks on the results stay valid.
"""
from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

__all__ = ['AVAILABLE', 'recurrent_readout', 'in_range', 'filter_step', 'warm_up', 'DISABLE_ENV']

# set to 1 to force the numpy path (tests of the fallback, or to rule the kernel out in the field)
DISABLE_ENV = 'INVDYN_DISABLE_NUMBA'


def _build() -> tuple[Callable, Callable, Callable] | None:
    if os.environ.get(DISABLE_ENV, '') not in ('', '0'):
        return None
    try:
        import numba  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - absent or broken: the numpy path
        return None

    @numba.njit(fastmath={'reassoc', 'contract'}, cache=False, nogil=True)
    def readout(r, inv, shift, clip, gain, n, xs, lstm, readout_on,
                wx0, wxr, pre, h_prev, c_prev, head_w, head_b, g, h, out):  # pragma: no cover
        # (numba-compiled: coverage cannot see inside; tested against the numpy path)
        width = r.shape[0]
        finite = True
        for k in range(width):
            v = r[k]
            if not math.isfinite(v):
                finite = False
            # float64 product cast to float32, then a float32 add: numpy's
            # multiply(r, inv, out=float32) + add(out, shift) of the numpy path
            s = np.float32(v * np.float64(inv[k])) + shift[k]
            if s > clip:
                s = clip
            elif s < -clip:
                s = -clip
            xs[k] = s
        if gain > 0.0:
            for j in range(n):
                xs[width + j] = np.float32(math.tanh(np.float32(gain * xs[n + j])))
        if not finite:
            return 1
        if not readout_on:
            return 0
        G = pre.shape[1]
        H = G // 4
        layers = pre.shape[0]
        rows = G if lstm else 3 * H          # GRU: the last H rows have no input part
        for layer in range(layers):
            if layer == 0:
                W = wx0
                x = xs
            else:
                W = wxr[layer - 1]
                x = h[layer - 1]
            K = W.shape[1]
            for i in range(rows):
                acc = np.float32(0.0)
                for k in range(K):
                    acc += W[i, k] * x[k]
                g[i] = acc + pre[layer, i]
            for i in range(rows, G):
                g[i] = pre[layer, i]
            if lstm:                         # (i, f, o) rows halved: sigmoid = 0.5 tanh + 0.5
                for j in range(H):
                    ig = np.float32(0.5) * np.float32(math.tanh(g[j])) + np.float32(0.5)
                    fg = np.float32(0.5) * np.float32(math.tanh(g[H + j])) + np.float32(0.5)
                    og = np.float32(0.5) * np.float32(math.tanh(g[2 * H + j])) + np.float32(0.5)
                    cc = ig * np.float32(math.tanh(g[3 * H + j])) + fg * c_prev[layer, j]
                    h[layer, j] = og * np.float32(math.tanh(cc))
            else:                            # [r, z | W_in x + b_in | W_hn h + b_hn]
                for j in range(H):
                    rg = np.float32(0.5) * np.float32(math.tanh(g[j])) + np.float32(0.5)
                    zg = np.float32(0.5) * np.float32(math.tanh(g[H + j])) + np.float32(0.5)
                    nn = np.float32(math.tanh(g[2 * H + j] + rg * g[3 * H + j]))
                    h[layer, j] = nn + zg * (h_prev[layer, j] - nn)
        top = h[layers - 1]
        ok = True
        for i in range(head_b.shape[0]):
            acc = head_b[i]
            for k in range(H):
                acc += head_w[i, k] * np.float64(top[k])
            out[i] = acc
            if not math.isfinite(acc):
                ok = False
        return 0 if ok else 2

    @numba.njit(cache=False, nogil=True)
    def in_range(raw, limits, ok):  # pragma: no cover - compiled; tested against numpy
        # ok = |raw| <= limits (False for NaN / Inf too); all(ok)
        good = True
        for k in range(raw.shape[0]):
            ok[k] = abs(raw[k]) <= limits[k]
            if not ok[k]:
                good = False
        return good

    @numba.njit(cache=False, nogil=True)
    def filter_step(raw, prev, tv, tv_prev, x, zi, sos, den_floor, out):  # pragma: no cover
        # StreamingEstimator.update after priming, no fastmath: the same float64 operations in
        # the same order as its numpy calls and scipy's sosfilt kernel, so bit-identical
        n = tv.shape[0]
        for k in range(3 * n):               # channel means of this and the previous sample
            x[k, 0] = (raw[k] + prev[k]) * 0.5
        for j in range(n):                   # velocity and time differences
            x[3 * n + j, 0] = raw[n + j] - prev[n + j]
            x[4 * n + j, 0] = tv[j] - tv_prev[j]
        for k in range(3 * n):
            prev[k] = raw[k]
        for j in range(n):
            tv_prev[j] = tv[j]
        for i in range(x.shape[0]):          # one sample of the cascaded sections per channel
            x_cur = x[i, 0]
            for s in range(sos.shape[0]):
                x_new = sos[s, 0] * x_cur + zi[i, s, 0]
                zi[i, s, 0] = sos[s, 1] * x_cur - sos[s, 4] * x_new + zi[i, s, 1]
                zi[i, s, 1] = sos[s, 2] * x_cur - sos[s, 5] * x_new
                x_cur = x_new
            x[i, 0] = x_cur
        finite = True
        for k in range(4 * n):
            v = x[k, 0]
            if k >= 3 * n:                   # acceleration: dv / np.maximum(dt, floor)
                d = x[n + k, 0]
                if not math.isnan(d) and not d >= den_floor:    # NaN in either one: NaN
                    d = den_floor
                v = v / d
            out[k] = v
            if not math.isfinite(v):
                finite = False
        return finite

    return readout, in_range, filter_step


_built = _build()
recurrent_readout, in_range, filter_step = _built if _built is not None else (None, None, None)
AVAILABLE = _built is not None
_warm = False


def warm_up() -> None:
    """Compile the kernels now for the argument types the predictor and the estimator use (no-op
    without numba)."""
    global _warm
    if recurrent_readout is None or _warm:
        return
    n, H, layers = 1, 1, 2
    f4, f8 = np.float32, np.float64
    for lstm in (True, False):
        recurrent_readout(np.zeros(3 * n), np.ones(3 * n, f4), np.zeros(3 * n, f4), f4(10.0),
                          f4(0.0), n, np.zeros(3 * n, f4), lstm, True,
                          np.zeros((4 * H, 3 * n), f4), np.zeros((layers - 1, 4 * H, H), f4),
                          np.zeros((layers, 4 * H), f4), np.zeros((layers, H), f4),
                          np.zeros((layers, H), f4), np.zeros((n, H), f8), np.zeros(n, f8),
                          np.zeros(4 * H, f4), np.zeros((layers, H), f4), np.zeros(n, f8))
    in_range(np.zeros(3 * n), np.ones(3 * n), np.zeros(3 * n, dtype=bool))
    filter_step(np.zeros(3 * n), np.zeros(3 * n), np.zeros(n), np.zeros(n), np.zeros((5 * n, 1)),
                np.zeros((5 * n, 2, 2)), np.zeros((2, 6)), 1e-4, np.zeros(4 * n))
    _warm = True
