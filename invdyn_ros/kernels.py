"""Compiled per-sample kernels for the control loop's fast path (numba), with a numpy fallback.

Why: in the node, the fast path runs right after the thread wakes up for a message, with caches
that the other processes on the core have evicted. There, each small numpy call costs 2-3x what it
costs in a warm loop (measured in the node under ``bench/latency.py``: the LSTM read-out 26 µs
vs 14 µs warm, the estimator 43 µs vs 14 µs), and the read-out is ~30 numpy calls. One compiled
call per network does the same arithmetic with one dispatch and a small, contiguous footprint.

numba is optional: :data:`AVAILABLE` says whether it imported and the self-check passed, and
:func:`recurrent_readout` is ``None`` otherwise; callers keep their numpy path for that case
(``Predictor`` does). The kernel is compiled on first use (~1 s), so callers warm it up at
construction (:func:`warm_up`), never on the first message.

Floating point: ``fastmath`` is limited to reassociation and contraction (vectorized dot products,
FMA); NaN/Inf semantics are kept, so finiteness checks on the results stay valid.
"""
from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

__all__ = ['AVAILABLE', 'recurrent_readout', 'warm_up', 'DISABLE_ENV']

# set to 1 to force the numpy path (tests of the fallback, or to rule the kernel out in the field)
DISABLE_ENV = 'INVDYN_DISABLE_NUMBA'


def _build() -> Callable | None:
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

    return readout


recurrent_readout = _build()
AVAILABLE = recurrent_readout is not None
_warm = False


def warm_up() -> None:
    """Compile the kernel now for the argument types the predictor uses (no-op without numba)."""
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
    _warm = True
