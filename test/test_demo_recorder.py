"""demo_recorder.py: the record of a run, its snapshot by stamp and the node's ready state."""
from __future__ import annotations

import numpy as np
import pytest

from invdyn_ros.sim.demo_recorder import DemoRecorder, ready_since_ns
from invdyn_ros.sim.demo_schedule import build_schedule

NAMES = ('a', 'b', 'c')


def _synthetic_run(schedule, seed=0, ideal_rms=1e-4, pd_rms=5e-2, learned_rms=1e-2,
                   trajectory_rms=1.1e-2):
    """A recorder fed like the demo feeds it: 500 Hz, stamps from 1 s, phase-dependent errors."""
    rng = np.random.default_rng(seed)
    rec = DemoRecorder(NAMES)
    t0 = 1_000_000_000
    per_phase = {'pd': pd_rms, 'learning': 3e-2, 'learned': learned_rms, 'ideal': ideal_rms,
                 'payload': learned_rms, 'trajectory': trajectory_rms,
                 'learned_unseen': 4 * learned_rms, 'pd_unseen': 2 * pd_rms,
                 'ideal_unseen': 2 * ideal_rms}
    k_total = int(schedule.duration_s * 500)
    for k in range(k_total + 1):
        t = k * 0.002
        stamp = t0 + k * 2_000_000
        phase = schedule.phase_at(t)
        # |err| constant within a phase (random signs): its RMS over any window is known exactly.
        rec.add_tracking(stamp, per_phase[phase.name] * rng.choice([-1.0, 1.0], size=3))
        tau = np.array([10 * np.sin(t), 5 * np.cos(t), 2.0 + np.sin(3 * t)])
        rec.add_torque(stamp, tau, wall_s=t * 2.0)        # the sim runs at half real time
        if k % 2 == 0:
            rec.add_prediction(stamp, tau + 0.1 * rng.standard_normal(3))
        if abs(t - 30.0) < 1e-9:
            rec.mark_ready()
    rec.add_prediction(t0 + 7, [1.0, 2.0, 3.0])            # no torque at that stamp: dropped
    rec.add_tracking(t0 + 9, [np.nan, 0.0, 0.0])            # non-finite: rejected
    return rec


def test_recorder_snapshot_matches_predictions_by_stamp():
    s = build_schedule(100.0)
    rec = _synthetic_run(s)
    run = rec.snapshot()
    assert run.t_track[0] == 0.0 and run.t_ready == pytest.approx(30.0)
    assert len(run.t_pred) == len(run.t_torque) // 2 + 1       # every second stamp, no stray one
    np.testing.assert_array_equal(np.isin(run.t_pred, run.t_torque), True)
    assert rec.counters['tracking_rejected'] == 1
    assert run.ticks == len(run.t_torque)
    assert run.ticks / run.wall_s == pytest.approx(250.0, rel=1e-3)   # 500 Hz at half speed


def test_recorder_ready_state_follows_the_node():
    rec = DemoRecorder(NAMES)
    rec.add_torque(5, [0.0, 0.0, 0.0], wall_s=0.0)
    assert not rec.ready and not rec.ready_now
    rec.mark_ready(10, ready=True)
    rec.mark_ready(20, ready=False)
    assert rec.ready and not rec.ready_now and rec.ready_ns == 10
    rec.mark_ready(30, ready=True)
    rec.mark_ready(40, ready=True)                  # no change: no new event
    assert rec.ready_now and rec._ready_events == [(10, True), (20, False), (30, True)]


def test_ready_since_from_the_diagnostics_values():
    assert ready_since_ns({'ready': 'True', 'ready_since': '12.345'}) == 12_345_000_000
    for values in ({}, {'ready_since': ''}, {'ready_since': 'nan'}, {'ready_since': 'x'},
                   {'ready_since': '-1.0'}, {'ready_since': 'inf'}):
        assert ready_since_ns(values) is None, values
    rec = DemoRecorder(NAMES)
    for stamp in (1_000_000_000, 4_000_000_000):                   # the report comes later ...
        rec.add_tracking(stamp, [0.0, 0.0, 0.0])
        rec.add_torque(stamp, [0.0, 0.0, 0.0], wall_s=stamp * 1e-9)
    rec.mark_ready(ready_since_ns({'ready_since': '3.2'}), ready=True)
    assert rec.snapshot().t_ready == pytest.approx(2.2)             # ... the time is the stamp's
