"""The documented properties of bench/table1_signal.py's signal generator and naive predictor.

The benchmark's numbers are only meaningful if the signal is what its docstring says: these tests
check the construction (kinds per block, periods, amplitudes, continuity at boundaries, the split)
and the noise against known answers, without training anything.
"""
from __future__ import annotations

import numpy as np
import pytest

from bench.table1_signal import (SEGMENT_KINDS, SignalConfig, difference_features, lag_matrix,
                                 make_signal, naive_predict, waveform)

CFG = SignalConfig()


@pytest.fixture(scope='module')
def clean():
    return make_signal(3, 0.0, CFG)


def test_same_seed_same_signal_other_seed_other_signal():
    a, b = make_signal(5, 0.1, CFG), make_signal(5, 0.1, CFG)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    assert a.segments == b.segments
    c = make_signal(6, 0.1, CFG)
    assert c.segments != a.segments


def test_every_block_has_each_kind_once(clean):
    kinds = [s.kind for s in clean.segments]
    assert len(kinds) == 3 * CFG.blocks
    for b in range(CFG.blocks):
        assert sorted(kinds[3 * b:3 * b + 3]) == sorted(SEGMENT_KINDS)


def test_segments_tile_the_signal_with_whole_periods(clean):
    assert clean.segments[0].start == 0
    assert clean.segments[-1].stop == len(clean.clean) == len(clean.noisy) == len(clean.t)
    for prev, seg in zip(clean.segments, clean.segments[1:]):
        assert seg.start == prev.stop
    for seg in clean.segments:
        assert CFG.min_period <= seg.period <= CFG.max_period
        assert CFG.min_amplitude <= seg.amplitude <= CFG.max_amplitude
        length = seg.stop - seg.start
        assert length % seg.period == 0
        assert length // seg.period == max(1, round(CFG.segment_target / seg.period))
        y = clean.clean[seg.start:seg.stop]
        assert y[0] == pytest.approx(0.0, abs=1e-12)          # starts at 0 ...
        assert y[1] > 0                                        # ... rising
        assert np.max(np.abs(y)) <= seg.amplitude + 1e-12


def test_split_is_at_a_block_boundary_and_test_part_has_every_kind(clean):
    first_test = clean.segments[3 * CFG.train_blocks]
    assert clean.split == first_test.start
    test_kinds = {s.kind for s in clean.segments if s.start >= clean.split}
    assert test_kinds == set(SEGMENT_KINDS)
    np.testing.assert_allclose(np.diff(clean.t), 1.0 / CFG.rate_hz)


def test_waveform_shapes_known_answers():
    P, A = 8, 0.5
    np.testing.assert_allclose(waveform('sine', 2 * P, P, A), A * np.sin(2 * np.pi * np.arange(16) / P),
                               atol=1e-12)
    # triangle: 0, A/2, A, A/2, 0, -A/2, -A, -A/2 per period of 8
    np.testing.assert_allclose(waveform('triangle', P, P, A),
                               A * np.array([0, 0.5, 1, 0.5, 0, -0.5, -1, -0.5]), atol=1e-12)
    # sawtooth: rises 0 -> A over half a period, jumps to -A, rises back towards 0
    np.testing.assert_allclose(waveform('sawtooth', P, P, A),
                               A * np.array([0, 0.25, 0.5, 0.75, -1, -0.75, -0.5, -0.25]), atol=1e-12)
    with pytest.raises(ValueError):
        waveform('square', P, P, A)


def test_noise_is_gaussian_with_the_requested_std():
    sig = make_signal(11, 0.1, CFG)
    noise = sig.noisy - sig.clean
    n = len(noise)
    assert abs(noise.mean()) < 4 * 0.1 / np.sqrt(n)
    assert noise.std() == pytest.approx(0.1, rel=0.05)
    assert make_signal(11, 0.0, CFG).noisy.tolist() == sig.clean.tolist()
    with pytest.raises(ValueError):
        make_signal(0, float('nan'), CFG)


def test_naive_predictor_is_exact_on_lines_and_wrong_at_corners():
    x = 0.3 * np.arange(10.0) - 1.0
    p = naive_predict(x)
    np.testing.assert_allclose(p[1:-1], x[2:])              # x[t] + (x[t] - x[t-1]) = x[t+1]
    tri = waveform('triangle', 16, 8, 1.0)
    err = naive_predict(tri)[:-1] - tri[1:]
    # tri = 0, .5, 1, .5, 0, ...: on the lines the guess is exact, at the peak it overshoots
    np.testing.assert_allclose(err[[1, 3, 4]], 0.0, atol=1e-12)
    assert err[2] == pytest.approx(1.0)                    # 2*1 - 0.5 = 1.5 predicted, 0.5 came


def test_features_line_up_with_time():
    x = np.array([0.0, 1.0, 3.0, 6.0, 10.0])
    f = difference_features(x)
    np.testing.assert_allclose(f[:, 0], x)
    np.testing.assert_allclose(f[2:, 1], [2.0, 3.0, 4.0])
    np.testing.assert_allclose(f[2:, 2], [1.0, 1.0, 1.0])
    lags = lag_matrix(x, 3)
    assert np.isnan(lags[:2]).all()
    np.testing.assert_allclose(lags[4], [3.0, 6.0, 10.0])   # row t ends with x[t]
