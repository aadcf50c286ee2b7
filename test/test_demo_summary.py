"""demo_summary.py: summary.json from a synthetic run whose answer is known, its checks, files
and tables."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_demo_recorder import _synthetic_run

from invdyn_ros.sim.demo_recorder import RecordedRun, save_recording
from invdyn_ros.sim.demo_schedule import DemoError, build_schedule, default_unseen_s
from invdyn_ros.sim.demo_summary import (SUMMARY_KEYS, UNSEEN_SUMMARY_KEYS, build_summary, plot_run,
                                         validate_summary, write_summary)
from invdyn_ros.sim.demo_tables import format_markdown_table, format_table

NAMES = ('a', 'b', 'c')


def test_summary_known_answers_and_files(tmp_path):
    s = build_schedule(100.0)
    run = _synthetic_run(s).snapshot({'x': 1})
    summary = build_summary(run, s, rate_hz=500.0)
    validate_summary(summary, 3)
    np.testing.assert_allclose(summary['tracking_rms_pd'], 5e-2, rtol=1e-3)
    np.testing.assert_allclose(summary['tracking_rms_learned'], 1e-2, rtol=1e-3)
    np.testing.assert_allclose(summary['tracking_rms_ideal'], 1e-4, rtol=1e-3)
    assert summary['improvement_vs_pd'] == pytest.approx(0.8, rel=1e-3)
    assert summary['learned_over_ideal'] == pytest.approx(100.0, rel=1e-3)
    np.testing.assert_allclose(summary['tracking_rms_trajectory_ff'], 1.1e-2, rtol=1e-3)
    assert summary['trajectory_ff_over_topic_ff'] == pytest.approx(1.1, rel=1e-3)
    assert summary['targets'] == {'cut_pd_by_50pct': True, 'within_2x_ideal': False,
                                  'learned_phase_starts_at_s': 40.0,
                                  'trajectory_ff_within_1.2x_topic_ff': True}
    assert summary['learning_seconds'] == pytest.approx(30.0) and summary['ready']
    assert summary['sim_rate_hz'] == pytest.approx(250.0, rel=1e-3)
    # nMSE of noise 0.1 on torques with std ~7.07, ~3.54 and ~0.71 over the learned window.
    assert all(0.0 < v < 0.05 for v in summary['prediction_nmse'])
    write_summary(tmp_path / 'summary.json', summary)
    loaded = json.loads((tmp_path / 'summary.json').read_text())
    assert set(SUMMARY_KEYS) <= set(loaded)
    table = format_table(summary)
    assert 'PD only' in table and 'mean' in table and all(n in table for n in NAMES)
    assert 'PD+traj ff' in table and '1.100x' in table
    assert format_markdown_table(summary).startswith('| joint |')
    plot_run(run, s, tmp_path / 'tracking_error.png', summary)
    assert (tmp_path / 'tracking_error.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    save_recording(tmp_path / 'recording.npz', run)
    with np.load(tmp_path / 'recording.npz') as rec:
        np.testing.assert_array_equal(rec['t_track'], run.t_track)    # times keep float64
        np.testing.assert_allclose(rec['err'], run.err, rtol=1e-6)
        assert list(rec['joint_names']) == list(NAMES)


def test_summary_with_the_unseen_phases(tmp_path):
    s = build_schedule(100.0, unseen_s=default_unseen_s(100.0))
    run = _synthetic_run(s).snapshot()
    summary = build_summary(run, s, rate_hz=500.0)
    validate_summary(summary, 3)
    np.testing.assert_allclose(summary['tracking_rms_learned_unseen'], 4e-2, rtol=1e-3)
    np.testing.assert_allclose(summary['tracking_rms_pd_unseen'], 1e-1, rtol=1e-3)
    np.testing.assert_allclose(summary['tracking_rms_ideal_unseen'], 2e-4, rtol=1e-3)
    assert summary['learned_over_ideal_unseen'] == pytest.approx(200.0, rel=1e-3)
    assert summary['learned_over_ideal'] == pytest.approx(100.0, rel=1e-3)   # primary: as before
    assert summary['improvement_vs_pd_unseen'] == pytest.approx(0.6, rel=1e-3)
    assert summary['targets']['within_2x_ideal_unseen'] is False
    assert 0.0 < np.mean(summary['prediction_nmse_unseen']) < 0.05
    table = format_table({**summary, 'unseen_reference': {
        'speed': 1.5, 'center_offset_rad': [0.6, 0.6, 0.6],
        'distance_to_primary': {'median_rad': 1.23}}})
    for text in ('unseen: PD only', 'unseen: PD+learned ff', 'unseen: PD+ideal ff',
                 'unseen: pred. nMSE', 'learned / ideal 200.00x (primary: 100.00x)',
                 '1.5x faster', 'centre +0.60 rad on every joint', '1.23 rad',
                 'period by period', 'node not ready for 0.0 s'):
        assert text in table, text
    mean_row = next(line for line in table.splitlines() if line.startswith('mean'))
    assert '40.00' in mean_row and '100.00' in mean_row and '0.20' in mean_row
    assert 'unseen: PD+learned ff' in format_markdown_table(summary)
    plot_run(run, s, tmp_path / 'tracking_error.png', summary)
    assert (tmp_path / 'tracking_error.png').read_bytes()[:4] == b'\x89PNG'
    # The contract: a summary whose schedule has the unseen phases must carry their keys.
    loaded = json.loads(json.dumps(summary))
    for key in UNSEEN_SUMMARY_KEYS + ('learned_over_ideal_unseen',):
        with pytest.raises(DemoError, match=key):
            validate_summary({k: v for k, v in loaded.items() if k != key}, 3)
    with pytest.raises(DemoError):
        validate_summary({**loaded, 'tracking_rms_pd_unseen': [1.0, float('nan'), 1.0]}, 3)
    # ... and one without them validates without them.
    primary = build_summary(_synthetic_run(build_schedule(100.0)).snapshot(),
                            build_schedule(100.0), rate_hz=500.0)
    assert not set(UNSEEN_SUMMARY_KEYS) & set(primary)
    validate_summary(primary, 3)
    assert 'unseen' not in format_table(primary)


def test_learned_unseen_period_by_period_and_not_ready_time():
    """The node adapts on the unseen reference: the learned_unseen window is also scored period by
    period, and the time it reported itself not ready after the switch is given."""
    s = build_schedule(210.0, unseen_s=60.0)
    phase, period = s.get('learned_unseen'), s.unseen_period_s
    rec = _synthetic_run(s)
    # The error of learned_unseen: 30 mrad in its first measured period, 3 mrad after.
    run = rec.snapshot()
    first = (run.t_track >= phase.measure_start_s) & \
        (run.t_track < phase.measure_start_s + period)
    later = (run.t_track >= phase.measure_start_s + period) & (run.t_track < phase.end_s)
    run.err[first] = 3e-2 * np.sign(run.err[first])
    run.err[later] = 3e-3 * np.sign(run.err[later])
    run.ready_events.extend([(151.0, False), (160.5, True)])
    summary = build_summary(run, s, rate_hz=500.0)
    by_period = summary['tracking_rms_learned_unseen_by_period']
    assert len(by_period) == phase.whole_periods == 3
    np.testing.assert_allclose(by_period, [[3e-2] * 3, [3e-3] * 3, [3e-3] * 3], rtol=1e-3)
    assert summary['learned_over_ideal_unseen_last_period'] == pytest.approx(15.0, rel=1e-3)
    assert summary['node_not_ready_unseen_s'] == pytest.approx(9.5)
    assert '30.00, 3.00, 3.00 mrad' in format_table(summary)


def test_summary_with_payload_change_and_never_ready():
    s = build_schedule(160.0, payload_change=True, payload_after_kg=2.0)
    rec = _synthetic_run(s)
    rec.ready_ns = None
    summary = build_summary(rec.snapshot(), s, rate_hz=500.0)
    validate_summary(summary, 3)
    assert summary['ready'] is False and summary['learning_seconds'] == 160.0
    change = summary['payload_change']
    assert change['time_s'] == s.payload_change_s and change['after_kg'] == 2.0
    assert change['node_ready_again_after_s'] is None           # it never lost readiness
    # The node drops out of ready 1 s after the change and is back 25 s after it.
    stamp = lambda t: 1_000_000_000 + int(round(t * 1e9))      # noqa: E731
    rec.mark_ready(stamp(s.payload_change_s + 1.0), ready=False)
    rec.mark_ready(stamp(s.payload_change_s + 25.0), ready=True)
    change = build_summary(rec.snapshot(), s, rate_hz=500.0)['payload_change']
    assert change['node_not_ready_after_s'] == pytest.approx(1.0)
    assert change['node_ready_again_after_s'] == pytest.approx(25.0)
    assert len(summary['tracking_rms_payload']) == 3


def test_payload_change_is_scored_within_its_phase_not_on_the_unseen_reference_after_it():
    """The unseen phases follow the payload phase; their larger error is the new reference's,
    not the payload's, and must not count as "not recovered"."""
    s = build_schedule(330.0, payload_change=True, payload_after_kg=3.0, unseen_s=60.0)
    run = _synthetic_run(s).snapshot()
    payload, unseen = s.get('payload'), s.get('learned_unseen')
    assert payload.end_s <= unseen.start_s
    later = run.t_pred >= payload.end_s
    run.predicted[later] += 2.0                        # 20x the prediction noise of 0.1
    change = build_summary(run, s, rate_hz=500.0)['payload_change']
    # no change in error at the payload change (the synthetic noise is the same throughout)
    assert change['error_rms_before'] == pytest.approx(0.1, rel=0.1)
    assert change['error_rms_first_within_s'] == pytest.approx(0.5, abs=0.01)
    assert change['error_rms_stays_within_s'] == 0.0
    assert change['error_rms_peak'] < 0.15
    assert change['final_period_nmse'] < 1.5 * change['pre_change_nmse']
    assert change['recovered']
    assert 'first back within 1.5x after 0.5 s' in format_table(
        build_summary(run, s, rate_hz=500.0))


def test_validate_summary_rejects_bad_values(tmp_path):
    good = {'tracking_rms_pd': [1.0, 2.0], 'tracking_rms_learned': [1.0, 2.0],
            'tracking_rms_ideal': [1.0, 2.0], 'prediction_nmse': [0.1, 0.2],
            'learning_seconds': 3.0, 'sim_rate_hz': 500.0}
    validate_summary(good, 2)
    for key, bad in (('tracking_rms_pd', [1.0]), ('prediction_nmse', [0.1, float('nan')]),
                     ('sim_rate_hz', float('inf')), ('learning_seconds', None)):
        with pytest.raises(DemoError):
            validate_summary({**good, key: bad}, 2)
    with pytest.raises(DemoError):
        validate_summary({k: v for k, v in good.items() if k != 'sim_rate_hz'}, 2)
    with pytest.raises(ValueError):
        write_summary(tmp_path / 's.json', {**good, 'sim_rate_hz': float('nan')})
    assert not list(tmp_path.iterdir())     # nothing half-written


def test_summary_without_predictions_fails_clearly():
    s = build_schedule(100.0)
    rec = _synthetic_run(s)
    run = rec.snapshot()
    empty = RecordedRun(**{**run.__dict__, 't_pred': np.zeros(0), 'predicted': np.zeros((0, 3))})
    with pytest.raises(DemoError, match='predicted_effort'):
        build_summary(empty, s, rate_hz=500.0)


def test_summary_reports_feedforward_repeated_from_the_step_before():
    """``feedforward_repeated_fraction_learned``: the share of the learned window's steps that
    applied the step before's feedforward; ``feedforward_longest_repeat_learned``: the longest run
    of steps on one feedforward. Here each feedforward is applied twice, and one ten times."""
    s = build_schedule(100.0)
    rec = _synthetic_run(s)
    learned = s.get('learned')
    t0 = 1_000_000_000
    k0, k1 = int(round(learned.start_s * 500)), int(round(learned.end_s * 500))
    hold = k0 + (k1 - k0) // 2                      # steps hold .. hold + 9 share one value
    for k in range(k0, k1):
        value = float(hold) if hold <= k < hold + 10 else float((k - k0) // 2)
        rec.add_feedforward(t0 + k * 2_000_000, [value] * 3, [0.0] * 3, True)
    summary = build_summary(rec.snapshot(), s, rate_hz=500.0)
    assert summary['feedforward_longest_repeat_learned'] == 10
    assert summary['feedforward_repeated_fraction_learned'] == pytest.approx(0.5, abs=0.01)
    assert summary['feedforward_missing_fraction_learned'] == 0.0
    assert 'repeating the step before\'s: 50' in '\n'.join(format_table(summary).splitlines())
