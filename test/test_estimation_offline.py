"""Known-answer tests of invdyn_ros.stages.estimation_offline (the zero-phase form for recorded arrays).

Signals and tolerances as in test_estimation: a slow sine, the filter's own magnitude response.
"""
import math

import numpy as np
import pytest
import scipy.signal
from test_estimation import F_SINE, RATE, A, T, W, sine

from invdyn_ros.errors import DatasetError
from invdyn_ros.stages.estimation_offline import estimate_offline
from invdyn_ros.stages.filters import FilterConfig, design_filter


@pytest.mark.parametrize('eps', [0.0, 0.2])
def test_offline_is_zero_phase_and_differentiates_with_real_t(eps):
    """Error budget (relative): 1 - |H(w)|^2 (filtfilt magnitude), (w T)^2 / 6 per central
    difference of np.gradient, and with stamp jitter +-eps T a time smear of at most 2 eps T
    (the index-space filter output describes the neighbours' mean time), i.e. w * 2 eps T.
    A factor 1.5 covers the neglected higher-order terms."""
    rng = np.random.default_rng(4)
    t = 3.0 + np.arange(4000) * T + rng.uniform(-eps * T, eps * T, 4000)
    q, qd, qdd = sine(t)
    cfg = FilterConfig()
    q_f, qd_f, qdd_f, tau_f = estimate_offline(t, q[:, None], None, 3.0 * q[:, None], cfg)
    inner = slice(500, -500)                                   # away from the padded ends
    sos, _ = design_filter(cfg, RATE)
    _, h = scipy.signal.sosfreqz(sos, worN=[F_SINE], fs=RATE)
    mag = 1 - abs(h[0]) ** 2
    grad = (W * T) ** 2 / 6
    smear = W * 2 * eps * T
    for got, ref, scale, budget in ((q_f, q, A, mag), (tau_f, 3.0 * q, 3.0 * A, mag),
                                    (qd_f, qd, A * W, mag + grad),
                                    (qdd_f, qdd, A * W * W, mag + 2 * grad)):
        tol = 1.5 * scale * (budget + smear)
        assert np.abs(got[inner, 0] - ref[inner]).max() <= tol
    if eps == 0.0:
        # zero phase: the fitted delay of the filtered sine is ~0 (the causal chain's is 15 ms)
        basis = np.column_stack([np.sin(W * t), np.cos(W * t)])[inner]
        (a, b), *_ = np.linalg.lstsq(basis, q_f[inner, 0], rcond=None)
        assert abs(math.atan2(b, a) / W) < 1e-6
    # the recorded velocity is used where finite, the position gradient elsewhere
    qd_rec = np.where(rng.random(qd.shape) < 0.1, np.nan, qd)[:, None]
    _, qd_f2, _, tau_none = estimate_offline(t, q[:, None], qd_rec, None, cfg)
    assert tau_none is None
    assert np.abs(qd_f2[inner, 0] - qd[inner]).max() <= 1.5 * A * W * (mag + grad + smear)


def test_offline_segments_at_gaps_and_rejects_bad_arrays():
    t = np.concatenate([np.arange(300) * T, 5.0 + np.arange(5) * T, [10.0]])
    q = np.concatenate([np.zeros(300), np.ones(5), [2.0]])[:, None]
    q_f, qd_f, qdd_f, _ = estimate_offline(t, q, config=FilterConfig(rate_hz=RATE))
    # constant segments stay constant: nothing is smeared across the gaps
    np.testing.assert_allclose(q_f[:, 0], q[:, 0], atol=1e-12)
    np.testing.assert_allclose(qd_f, 0.0, atol=1e-9)
    with pytest.raises(DatasetError):
        estimate_offline(t, np.where(t > 1, np.nan, q[:, 0])[:, None])
    with pytest.raises(DatasetError):
        estimate_offline(t[::-1], q)
    with pytest.raises(DatasetError):
        estimate_offline(t, q[:-1])
    with pytest.raises(DatasetError):
        estimate_offline(t, q, tau=np.zeros((len(t), 2)))
