"""demo_schedule.py: the phases, the unseen part and the measure windows over whole periods."""
from __future__ import annotations

import pytest

from invdyn_ros.sim.demo_schedule import UNSEEN_PHASES, DemoError, build_schedule, default_unseen_s


# ============================================================================ schedule
def test_default_schedule_learns_60_s_and_measures_whole_periods():
    s = build_schedule(150.0)
    assert [p.name for p in s.phases] == ['pd', 'learning', 'learned', 'trajectory', 'ideal']
    assert [p.mode for p in s.phases] == ['pd', 'learned', 'learned', 'trajectory', 'ideal']
    assert s.get('learned').start_s == 60.0          # 60 s of simulated learning, PD included
    assert s.phases[0].start_s == 0.0 and s.phases[-1].end_s == 150.0
    for a, b in zip(s.phases, s.phases[1:]):
        assert a.end_s == b.start_s
    # Whole reference periods (10 s) ending at the phase end, after the settling window.
    pd, learned, ideal = s.get('pd'), s.get('learned'), s.get('ideal')
    trajectory = s.get('trajectory')
    assert (pd.measure_start_s, pd.whole_periods) == (10.0, 1)
    assert (learned.measure_start_s, learned.whole_periods) == (65.0, 4)
    assert (trajectory.start_s, trajectory.end_s) == (105.0, 127.5)
    assert (trajectory.measure_start_s, trajectory.whole_periods) == (107.5, 2)
    assert (ideal.measure_start_s, ideal.whole_periods) == (130.0, 2)
    assert s.phase_at(-1.0).name == 'pd' and s.phase_at(60.0).name == 'learned'
    assert s.phase_at(1e9).name == 'ideal'


def test_payload_schedule_changes_inside_the_last_phase():
    s = build_schedule(210.0, payload_change=True, payload_after_kg=3.0)
    assert [p.name for p in s.phases][-1] == 'payload'
    payload = s.get('payload')
    assert payload.start_s < s.payload_change_s < payload.end_s == 210.0
    # PD, learned and ideal are all measured before the payload changes.
    assert s.get('ideal').end_s <= payload.start_s < s.payload_change_s
    assert payload.measure_start_s >= 0.5 * (payload.start_s + payload.end_s) - 1e-9


def test_short_schedule_still_has_a_window_per_phase():
    s = build_schedule(20.0, ramp_s=4.0)
    for p in s.phases:
        assert p.start_s <= p.measure_start_s < p.end_s
    assert s.get('pd').measure_start_s > 0.0


def test_unseen_phases_come_after_the_unchanged_primary_ones():
    """The default run: 150 s on the primary reference exactly as without the unseen part, then
    60 s unseen: learned, PD-only and ideal, each measured over whole periods of the 1.5x faster
    reference, the blend into it and the settling left out."""
    s, primary = build_schedule(210.0, unseen_s=60.0), build_schedule(150.0)
    assert default_unseen_s(210.0) == 60.0
    assert s.phases[:5] == primary.phases
    assert [p.name for p in s.phases[5:]] == list(UNSEEN_PHASES)
    assert [(p.mode, p.reference) for p in s.phases[5:]] == [
        ('learned', 'unseen'), ('pd', 'unseen'), ('ideal', 'unseen')]
    assert all(p.reference == 'primary' for p in s.phases[:5])
    assert (s.unseen_start_s, s.unseen_speed) == (150.0, 1.5)
    period = s.unseen_period_s
    assert period == pytest.approx(10.0 / 1.5)
    assert s.phases[5].start_s == 150.0 and s.phases[-1].end_s == 210.0
    for a, b in zip(s.phases, s.phases[1:]):
        assert a.end_s == b.start_s
    learned, pd, ideal = (s.get(name) for name in UNSEEN_PHASES)
    # The blend (ramp_s = 2 s) and the settling (2 s) come before the window.
    assert learned.measure_start_s >= learned.start_s + 2.0 + 2.0
    assert pd.measure_start_s >= pd.start_s + 2.0 and ideal.measure_start_s >= ideal.start_s + 2.0
    assert [p.whole_periods for p in (learned, pd, ideal)] == [3, 2, 2]
    for p in (learned, pd, ideal):       # whole periods of the unseen reference (10 ms rounding)
        assert p.end_s - p.measure_start_s == pytest.approx(p.whole_periods * period, abs=0.006)
    assert s.phase_at(149.99).name == 'ideal' and s.phase_at(150.0).name == 'learned_unseen'
    assert s.phase_at(1e9).name == 'ideal_unseen'
    assert s.as_dict()['phases'][5]['reference'] == 'unseen'


def test_unseen_part_of_short_and_payload_runs():
    s = build_schedule(28.0, unseen_s=default_unseen_s(28.0))
    assert default_unseen_s(28.0) == pytest.approx(8.0)
    assert s.phases[:5] == build_schedule(20.0).phases        # the primary part: the first 20 s
    for p in s.phases:
        assert p.start_s <= p.measure_start_s < p.end_s          # too short for periods: windows
    assert s.phases[-1].end_s == 28.0
    payload = build_schedule(330.0, payload_change=True, payload_after_kg=3.0, unseen_s=60.0)
    names = [p.name for p in payload.phases]
    assert names.index('payload') < names.index('learned_unseen')
    assert payload.get('payload').end_s == 270.0 < payload.phases[-1].end_s == 330.0
    # A slower unseen reference: its own period counts.
    slow = build_schedule(210.0, unseen_s=60.0, unseen_speed=0.5)
    assert slow.unseen_period_s == 20.0 and slow.get('learned_unseen').whole_periods == 1


@pytest.mark.parametrize('kwargs', [dict(duration_s=0.0), dict(duration_s=100.0, learning_s=100.0),
                                    dict(duration_s=float('nan')),
                                    dict(duration_s=100.0, payload_change=True),
                                    dict(duration_s=100.0, unseen_s=-1.0),
                                    dict(duration_s=100.0, unseen_s=100.0),
                                    dict(duration_s=100.0, unseen_s=float('nan')),
                                    dict(duration_s=100.0, unseen_s=20.0, unseen_speed=0.0),
                                    dict(duration_s=100.0, unseen_s=60.0, learning_s=40.0)])
def test_bad_schedule_raises(kwargs):
    with pytest.raises(DemoError):
        build_schedule(**kwargs)


# ============================================================================ metrics
