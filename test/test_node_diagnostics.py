"""node_diagnostics: the /diagnostics status as a pure function of a snapshot (no ROS).

The stats come from a real Pipeline (inline trainer), so a renamed stats key fails here."""
from __future__ import annotations

import math

import numpy as np
import pytest

from invdyn_ros.learning.training import make_trainer
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig
from invdyn_ros.ros.node_diagnostics import (ERROR, OK, WARN, LatencyRing, Snapshot,
                                             WarningThrottle, bad_input_warning, count_lost,
                                             node_counters, rejected_counts, statuses)

NAMES = ['a', 'b']


@pytest.fixture(scope='module')
def stats() -> dict:
    cfg = PipelineConfig.from_params({'joint_names': NAMES, 'torque_limits': [10.0, 10.0]})
    pipe = Pipeline(cfg, make_trainer(cfg, 'inline'))
    try:
        for i in range(50):
            t = 0.01 * i
            pipe.process(t, [math.sin(t), math.cos(t)], None, [0.1, 0.2])
        return pipe.stats()
    finally:
        pipe.close()


def counters(**changes: int) -> dict[str, int]:
    c = node_counters()
    c.update(received=50, outputs=40)
    c.update(changes)
    return c


def snapshot(stats: dict, **kw) -> Snapshot:
    stats = {**stats, 'ready': kw.pop('ready', True),
             'trainer_error': kw.pop('trainer_error', None)}
    lat = np.array([10.0, 20.0, 30.0])
    base = dict(node_name='invdyn_node', joint_names=NAMES, counters=counters(), stats=stats,
                input_rate_hz=100.0, latencies_us=(lat, lat / 2, lat / 3, lat * 2),
                latency_count=3, active=True, stale=False, trainer_kind='process',
                buffer_capacity=1000)
    base.update(kw)
    return Snapshot(**base)


def the_status(snap: Snapshot):
    (status,) = statuses(snap)
    return status


@pytest.mark.parametrize('change, level, message', [
    ({}, OK, 'ready'),
    ({'ready': False}, WARN, 'learning (feedforward is zero until ready)'),
    ({'stale': True}, WARN, 'no valid joint states'),
    ({'active': False}, WARN, 'inactive (lifecycle): feedforward is zero'),
    ({'checkpoint_failed': 'disk full'}, WARN, 'checkpoint failed (the previous one is kept)'),
    ({'filter_error': 'filter_cutoff_hz 40 >= Nyquist'}, ERROR, 'filter_cutoff_hz 40 >= Nyquist'),
    ({'trainer_error': 'worker died'}, ERROR, 'trainer failed'),
    # the first match wins: an error outranks the warnings, a stale input outranks learning
    ({'trainer_error': 'x', 'filter_error': 'y', 'active': False}, ERROR, 'trainer failed'),
    ({'filter_error': 'y', 'checkpoint_failed': 'z'}, ERROR, 'y'),
    ({'checkpoint_failed': 'z', 'active': False, 'stale': True}, WARN,
     'checkpoint failed (the previous one is kept)'),
    ({'active': False, 'stale': True, 'ready': False}, WARN,
     'inactive (lifecycle): feedforward is zero'),
    ({'stale': True, 'ready': False}, WARN, 'no valid joint states'),
])
def test_level_and_message(stats, change, level, message):
    status = the_status(snapshot(stats, **change))
    assert (status.level, status.message) == (level, message)


def test_name_hardware_id_and_the_values(stats):
    status = the_status(snapshot(stats, counters=counters(rejected_stamp=2, feedforward_zero=7),
                                 stale=True, active=False, last_checkpoint='ok 01:02:03',
                                 trajectory=[('trajectories', 4)]))
    assert status.name == 'invdyn_node: inverse dynamics learner' and status.hardware_id == 'a,b'
    values = dict(status.values)
    assert len(values) == len(status.values)                   # no key twice
    assert values['input_rate_hz'] == '100.0' and values['latency_samples'] == 3
    assert values['callback_latency_p50_us'] == '20.0'
    assert values['callback_latency_max_us'] == '30.0'
    assert values['reception_latency_p50_us'] == '40.0'
    assert values['reception_latency_max_us'] == '60.0'     # the worst joint state of the period
    assert values['rejected_stamp'] == 2 and values['feedforward_zero'] == 7
    assert values['stale_input'] is True and values['lifecycle_active'] is False
    assert values['checkpoint'] == 'ok 01:02:03' and values['trajectories'] == 4
    assert values['received'] == 50 and values['trainer'] == 'process'
    assert values['rate_hz_estimated'] is not None                 # 100 Hz stream
    assert values['identifier_switches'] == '0,0'               # one count per joint
    assert values['active_networks'] == 'lstm,lstm'
    for name in stats['learners']:                              # one block per network
        assert values[f'{name}.buffer_fill'].endswith('/1000') and f'{name}.steps' in values
    assert stats['learners']


def test_with_a_prior_the_residual_gate_and_what_each_joint_uses():
    from invdyn_ros.sim.arm import find_robot_urdf
    names = ['shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
             'wrist_2_joint', 'wrist_3_joint']
    cfg = PipelineConfig.from_params({'joint_names': names, 'torque_limits': [150.0] * 6,
                                      'prior': 'rnea', 'dual_enabled': True,
                                      'robot_description': find_robot_urdf('ur5').read_text()})
    pipe = Pipeline(cfg, make_trainer(cfg, 'inline'))
    try:
        for i in range(50):
            t = 0.01 * i
            pipe.process(t, np.full(6, math.sin(t)), None, np.full(6, 0.5))
        pipe.physics.gate[:] = [0, 1, 0, 0, 1, 0]       # the residual earned joints 1 and 4
        stats = pipe.stats()
        chosen = [int(i) for i in pipe.identifier.active]   # 0: the residual network
    finally:
        pipe.close()
    values = dict(the_status(snapshot(stats, joint_names=names)).values)
    assert values['physics.residual_gate'] == '0,1,0,0,1,0'
    assert len(values['physics.residual_error_rms'].split(',')) == 6
    weights = [float(w) for w in values['physics.identification_weights'].split(',')]
    assert len(weights) == 6 and min(weights) == 1.0     # the joint whose torque varies most
    assert stats['physics']['trust'] > 0.0                  # on the visited region
    expected = ['gru' if c else 'rnea+lstm' if j in (1, 4) else 'rnea'
                for j, c in enumerate(chosen)]
    assert values['active_networks'] == ','.join(expected)


def test_no_latencies_and_no_reception_times_give_nan_not_an_error(stats):
    values = dict(the_status(snapshot(stats, latencies_us=(), latency_count=0)).values)
    assert values['callback_latency_p50_us'] == 'nan' and values['latency_samples'] == 0
    lat = np.array([5.0])
    values = dict(the_status(snapshot(stats, latencies_us=(lat, lat, lat, np.array([math.nan])),
                                      latency_count=1)).values)
    assert values['callback_latency_p99_us'] == '5.0'
    assert values['reception_latency_p50_us'] == 'nan'
    assert values['reception_latency_max_us'] == 'nan'


def test_identifier_switches_are_reported_per_joint_in_joint_order(stats):
    values = dict(the_status(snapshot({**stats, 'identifier_switches': [3, 0]})).values)
    assert values['identifier_switches'] == '3,0'


def test_rejected_counts_add_the_estimators_nonfinite_count(stats):
    est = {**stats['estimator'], 'rejected_nonfinite': 3}
    got = rejected_counts(counters(rejected_nonfinite=2), {**stats, 'estimator': est})
    assert got['rejected_nonfinite'] == 5 and got['internal_errors'] == 0


def test_throttle_warns_once_per_growth_with_the_reason_of_the_counters_that_grew():
    throttle = WarningThrottle()
    assert throttle.lines({'rejected_stamp': 0}, {}, 0, 100.0, None) == []
    reasons = {'rejected_stamp': 'header.stamp is zero'}
    ((sev, text),) = throttle.lines({'rejected_stamp': 1, 'rejected_shape': 0}, reasons, 0,
                                    100.0, None)
    assert sev == 'warning' and text == bad_input_warning({'rejected_stamp': 1}, reasons)
    assert '(last: rejected_stamp: header.stamp is zero)' in text
    assert throttle.lines({'rejected_stamp': 1, 'rejected_shape': 0}, reasons, 0, 100.0, None) \
        == []                                                   # nothing new: quiet
    ((_, text),) = throttle.lines({'rejected_stamp': 1, 'rejected_shape': 4}, reasons, 0, 100.0,
                                  None)
    assert "{'rejected_shape': 4}" in text and 'stamp is zero' not in text


def test_throttle_reports_a_rate_change_and_a_new_filter_error_once():
    throttle = WarningThrottle()
    ((sev, text),) = throttle.lines({}, {}, 1, 250.0, None)
    assert sev == 'warning' and 'now 250.0 Hz (re-estimated 1 time(s))' in text
    assert throttle.lines({}, {}, 1, 250.0, None) == []
    ((sev, text),) = throttle.lines({}, {}, 1, 250.0, 'cutoff too high')
    assert sev == 'error' and text.startswith('cutoff too high: no filter')
    assert throttle.lines({}, {}, 1, 250.0, 'cutoff too high') == []
    assert throttle.lines({}, {}, 1, 250.0, None) == []            # fixed: nothing to log
    assert throttle.lines({}, {}, 1, 250.0, 'cutoff too high')[0][0] == 'error'   # again


def test_latency_ring_gives_the_new_latencies_in_us_newest_when_it_wrapped():
    with pytest.raises(ValueError):
        LatencyRing(6)
    ring = LatencyRing(4)
    lat, cpu, hand, recv, count = ring.take()
    assert count == 0 and np.isnan(lat).all() and lat.size == 1
    ring.record(1e-6, 2e-6, 3e-6, math.nan)
    lat, cpu, hand, recv, count = ring.take()
    assert count == 1 and lat.tolist() == [1.0] and cpu.tolist() == [2.0]
    assert hand.tolist() == [3.0] and np.isnan(recv).all()
    assert ring.take()[-1] == 0                                  # taken: nothing new
    for k in range(1, 7):                                        # 6 > 4: wraps
        ring.record(k * 1e-6, 0.0, 0.0, 0.0)
    lat, *_, count = ring.take()
    assert count == 4 and np.allclose(lat, [3.0, 4.0, 5.0, 6.0])  # the newest, in order


def test_lost_reports_add_believable_counts_and_garbage_is_counted_apart():
    from types import SimpleNamespace
    c = node_counters()
    for change in (3, 2 ** 64 - 5, 18446744075857035401, 0, -1, 2 ** 31 + 1, 4, 'x'):
        count_lost(c, SimpleNamespace(total_count_change=change))
    count_lost(c, object())                 # no field: one lost message
    assert c['lost'] == 3 + 4 + 1 and c['lost_reports_ignored'] == 6
    assert all(type(v) is int and v >= 0 for v in c.values())


def test_ready_since_is_the_stamp_that_made_it_ready_or_empty(stats):
    assert stats['ready_since'] is None                     # a real pipeline, not ready yet
    values = dict(the_status(snapshot(stats, ready=False)).values)
    assert values['ready_since'] == ''
    values = dict(the_status(snapshot({**stats, 'ready_since': 1796563426.1234567})).values)
    assert values['ready_since'] == '1796563426.123'
