"""Compiled per-sample kernels for the control loop's fast path (numba), with a numpy fallback.

Why: in the node, the fast path runs right after the thread wakes up for a message, with caches
that the other processes on the core have evicted. There, each small numpy call costs 2-3x what it
costs in a warm loop (measured in the node under ``bench/latency.py``: the LSTM read-out 26 µs
vs 14 µs warm, the estimator 43 µs vs 14 µs), and the read-out is ~30 numpy calls. One compiled
call per network does the same arithmetic with one dispatch and a small, contiguous footprint.

Kernels: :func:`recurrent_readout` (a predictor's scaling + every recurrent layer + head, one
sample), :func:`in_range` and :func:`filter_step` (the estimator's range check and, once primed,
its whole per-sample filter chain; no fastmath, bit-identical to the numpy / scipy path),
:func:`rnea_prior` (the physics prior's RNEA of a chain or tree of one-axis joints plus its
friction terms, one sample; equal to Pinocchio's ``rnea`` to rounding, see ``physics``).

numba is optional: :data:`AVAILABLE` says whether it imported, and the kernels are ``None``
otherwise; callers keep their numpy path for that case (``Predictor``, ``StreamingEstimator`` and
``PhysicsPrior``, whose path is Pinocchio's, do). The kernels are compiled on first use (~1 s), so
callers warm them up at construction (:func:`warm_up`), never on the first message.

Floating point: the read-out's ``fastmath`` is limited to reassociation and contraction (vectorized
dot products, FMA); NaN/Inf semantics are kept, so finiteness checks on the results stay valid.
"""
from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

__all__ = ['AVAILABLE', 'recurrent_readout', 'in_range', 'filter_step', 'rnea_prior', 'warm_up',
           'DISABLE_ENV']

# set to 1 to force the numpy path (tests of the fallback, or to rule the kernel out in the field)
DISABLE_ENV = 'INVDYN_DISABLE_NUMBA'
#: rnea_prior's pack: per body a row of RNEA_PACK_WIDTH, then one row [gravity, v_c]
RNEA_PACK_WIDTH = 34
RNEA_WORK_WIDTH = 30


def _build() -> tuple[Callable, Callable, Callable, Callable] | None:
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

    @numba.njit(cache=False, nogil=True, inline='always')
    def into_body(W, v0, v1, v2, w0, w1, w2):  # pragma: no cover - compiled (rnea_prior)
        # a parent's motion (v, w) in the body's frame (rotation W[0:9] and position W[9:12] of
        # the body in the parent): (R^T (v - p x w), R^T w)
        p0, p1, p2 = W[9], W[10], W[11]
        u0 = v0 - (p1 * w2 - p2 * w1)
        u1 = v1 - (p2 * w0 - p0 * w2)
        u2 = v2 - (p0 * w1 - p1 * w0)
        return (W[0] * u0 + W[3] * u1 + W[6] * u2, W[1] * u0 + W[4] * u1 + W[7] * u2,
                W[2] * u0 + W[5] * u1 + W[8] * u2, W[0] * w0 + W[3] * w1 + W[6] * w2,
                W[1] * w0 + W[4] * w1 + W[7] * w2, W[2] * w0 + W[5] * w1 + W[8] * w2)

    @numba.njit(cache=False, nogil=True, inline='always')
    def inertia_times(P, v0, v1, v2, w0, w1, w2):  # pragma: no cover - compiled (rnea_prior)
        # the body's spatial inertia (mass P[18], centre of mass P[19:22], rotational inertia at
        # it P[22:31]) times the motion (v, w): (m (v - c x w), I_c w + c x m (v - c x w))
        m, c0, c1, c2 = P[18], P[19], P[20], P[21]
        l0 = m * (v0 - (c1 * w2 - c2 * w1))
        l1 = m * (v1 - (c2 * w0 - c0 * w2))
        l2 = m * (v2 - (c0 * w1 - c1 * w0))
        return (l0, l1, l2, P[22] * w0 + P[23] * w1 + P[24] * w2 + (c1 * l2 - c2 * l1),
                P[25] * w0 + P[26] * w1 + P[27] * w2 + (c2 * l0 - c0 * l2),
                P[28] * w0 + P[29] * w1 + P[30] * w2 + (c0 * l1 - c1 * l0))

    @numba.njit(cache=False, nogil=True)
    def rnea_prior(q, qd, qdd, pack, work, out):  # pragma: no cover - compiled; tested against
        # Pinocchio. pack: one row per body in Pinocchio's order (parents first), built by
        # physics.RobotModel / PhysicsPrior: [0:9] R and [9:12] p of the joint placement in the
        # parent, [12:15] the unit axis, [15] prismatic (1) or revolute (0), [16] the parent's
        # row (-1: the base), [17] the joint's index in q / out, [18] mass, [19:22] centre of
        # mass, [22:31] rotational inertia at it (row-major), [31:34] viscous, Coulomb, offset;
        # last row [gravity (3), Coulomb velocity]. Spatial vectors as in Pinocchio: motion
        # (linear, angular), force (linear, moment), each in its body's frame.
        n = pack.shape[0] - 1
        gx, gy, gz, cv = pack[n, 0], pack[n, 1], pack[n, 2], pack[n, 3]
        for k in range(n):                   # forward: velocities, accelerations, body forces
            P = pack[k]
            W = work[k]
            j = int(P[17])
            qk, qdk, qddk = q[j], qd[j], qdd[j]
            x0, x1, x2 = P[12], P[13], P[14]
            prism = P[15] != 0.0
            if prism:
                J00, J01, J02, J10, J11, J12, J20, J21, J22 = 1., 0., 0., 0., 1., 0., 0., 0., 1.
            else:                            # rotation by qk about the unit axis x
                s, c = math.sin(qk), math.cos(qk)
                t = 1.0 - c
                J00, J01, J02 = c + t * x0 * x0, t * x0 * x1 - s * x2, t * x0 * x2 + s * x1
                J10, J11, J12 = t * x0 * x1 + s * x2, c + t * x1 * x1, t * x1 * x2 - s * x0
                J20, J21, J22 = t * x0 * x2 - s * x1, t * x1 * x2 + s * x0, c + t * x2 * x2
            for r in range(3):               # parent <- body: R = R_placement R_joint
                a, b, d = P[3 * r], P[3 * r + 1], P[3 * r + 2]
                W[3 * r] = a * J00 + b * J10 + d * J20
                W[3 * r + 1] = a * J01 + b * J11 + d * J21
                W[3 * r + 2] = a * J02 + b * J12 + d * J22
                W[9 + r] = P[9 + r]
                if prism:
                    W[9 + r] += (a * x0 + b * x1 + d * x2) * qk
            lam = int(P[16])
            if lam < 0:                      # the base: at rest, accelerating against gravity
                pv0 = pv1 = pv2 = pw0 = pw1 = pw2 = pb0 = pb1 = pb2 = 0.0
                pa0, pa1, pa2 = -gx, -gy, -gz
            else:
                Q = work[lam]
                pv0, pv1, pv2, pw0, pw1, pw2 = Q[12], Q[13], Q[14], Q[15], Q[16], Q[17]
                pa0, pa1, pa2, pb0, pb1, pb2 = Q[18], Q[19], Q[20], Q[21], Q[22], Q[23]
            v0, v1, v2, w0, w1, w2 = into_body(W, pv0, pv1, pv2, pw0, pw1, pw2)
            a0, a1, a2, b0, b1, b2 = into_body(W, pa0, pa1, pa2, pb0, pb1, pb2)
            # + the joint's motion S qd, and S qdd + v x (S qd)
            j0, j1, j2 = x0 * qdk, x1 * qdk, x2 * qdk
            if prism:                        # S qd = (x qd, 0)
                v0 += j0
                v1 += j1
                v2 += j2
                a0 += x0 * qddk + (w1 * j2 - w2 * j1)
                a1 += x1 * qddk + (w2 * j0 - w0 * j2)
                a2 += x2 * qddk + (w0 * j1 - w1 * j0)
            else:                            # S qd = (0, x qd)
                w0 += j0
                w1 += j1
                w2 += j2
                a0 += v1 * j2 - v2 * j1
                a1 += v2 * j0 - v0 * j2
                a2 += v0 * j1 - v1 * j0
                b0 += x0 * qddk + (w1 * j2 - w2 * j1)
                b1 += x1 * qddk + (w2 * j0 - w0 * j2)
                b2 += x2 * qddk + (w0 * j1 - w1 * j0)
            W[12], W[13], W[14], W[15], W[16], W[17] = v0, v1, v2, w0, w1, w2
            W[18], W[19], W[20], W[21], W[22], W[23] = a0, a1, a2, b0, b1, b2
            # f = I a + v x* (I v); I (v, w) = (m (v - c x w), I_c w + c x m (v - c x w))
            l0, l1, l2, n0, n1, n2 = inertia_times(P, v0, v1, v2, w0, w1, w2)
            f0, f1, f2, g0, g1, g2 = inertia_times(P, a0, a1, a2, b0, b1, b2)
            W[24] = f0 + (w1 * l2 - w2 * l1)     # v x* (l, n) = (w x l, w x n + v x l)
            W[25] = f1 + (w2 * l0 - w0 * l2)
            W[26] = f2 + (w0 * l1 - w1 * l0)
            W[27] = g0 + (w1 * n2 - w2 * n1) + (v1 * l2 - v2 * l1)
            W[28] = g1 + (w2 * n0 - w0 * n2) + (v2 * l0 - v0 * l2)
            W[29] = g2 + (w0 * n1 - w1 * n0) + (v0 * l1 - v1 * l0)
        finite = True
        for k in range(n - 1, -1, -1):       # backward: joint torques, forces to the parents
            P = pack[k]
            W = work[k]
            j = int(P[17])
            o = 24 if P[15] != 0.0 else 27   # prismatic: S^T f = x . force; revolute: x . moment
            t = P[12] * W[o] + P[13] * W[o + 1] + P[14] * W[o + 2]
            x = qd[j]
            t += P[31] * x + P[32] * math.tanh(x / cv) + P[33]
            out[j] = t
            if not math.isfinite(t):
                finite = False
            lam = int(P[16])
            if lam >= 0:                     # parent += X f: (R f, R n + p x R f)
                F0 = W[0] * W[24] + W[1] * W[25] + W[2] * W[26]
                F1 = W[3] * W[24] + W[4] * W[25] + W[5] * W[26]
                F2 = W[6] * W[24] + W[7] * W[25] + W[8] * W[26]
                p0, p1, p2 = W[9], W[10], W[11]
                Q = work[lam]
                Q[24] += F0
                Q[25] += F1
                Q[26] += F2
                Q[27] += W[0] * W[27] + W[1] * W[28] + W[2] * W[29] + (p1 * F2 - p2 * F1)
                Q[28] += W[3] * W[27] + W[4] * W[28] + W[5] * W[29] + (p2 * F0 - p0 * F2)
                Q[29] += W[6] * W[27] + W[7] * W[28] + W[8] * W[29] + (p0 * F1 - p1 * F0)
        return finite

    return readout, in_range, filter_step, rnea_prior


_built = _build()
recurrent_readout, in_range, filter_step, rnea_prior = \
    _built if _built is not None else (None, None, None, None)
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
    pack = np.zeros((2, RNEA_PACK_WIDTH))
    pack[0, 12], pack[0, 16], pack[1, 3] = 1.0, -1.0, 1.0
    rnea_prior(np.zeros(1), np.zeros(1), np.zeros(1), pack, np.zeros((1, RNEA_WORK_WIDTH)),
               np.zeros(1))
    _warm = True
