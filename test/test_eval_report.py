"""eval_report: the evaluation report (metrics.json content, tables, jsonable)."""
import json
import math

import numpy as np
from test_evaluation import FAST, make_recording

from invdyn_ros.offline.datasets import Recording
from invdyn_ros.offline.eval_report import EvalReport, jsonable
from invdyn_ros.offline.evaluation import evaluate


def test_report_json_has_the_documented_keys_and_a_table():
    report = evaluate(make_recording(500), 'naive', params=FAST)
    assert isinstance(report, EvalReport)
    data = json.loads(report.to_json())
    for key in ('bag', 'topic', 'protocol', 'train_fraction', 'joint_names', 'samples',
                'stream_seconds', 'wall_seconds', 'results'):
        assert key in data
    for key in ('model', 'nmse', 'nmse_mean', 'mse', 'train_seconds', 'predict_seconds'):
        assert key in data['results'][0]
    table = report.table()
    assert 'a' in table and 'b' in table and 'naive' in table and 'mean' in table


def test_the_identified_parameters_are_reported_in_a_table():
    from invdyn_ros.sim.arm import ArmConfig, SimulatedArm, find_robot_urdf
    from invdyn_ros.sim.trajectory import FourierTrajectory

    joints = ('shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
              'wrist_2_joint', 'wrist_3_joint')
    arm = SimulatedArm(ArmConfig(payload_kg=2.0, friction_eps=0.05))
    t = np.arange(0.0, 8.0, 0.01)
    q, qd, qdd = FourierTrajectory(6, seed=0).sample(t)
    tau = np.array([arm.rnea(a, b, c) for a, b, c in zip(q, qd, qdd)])
    rec = Recording(name='ur5', joint_names=joints, rate_hz=100.0, t=t, q=q, qd=qd, qdd=None,
                    tau=tau)
    params = {'robot_description': find_robot_urdf('ur5').read_text(), 'prior': 'rnea'}
    report = evaluate(rec, 'rnea,identified', params=params)
    table = report.parameters_table()
    assert table.startswith('identified parameters (identified;')
    assert '(rnea' not in table                     # the URDF's own values are not "identified"
    for j in joints:
        assert j in table
    rep = report.result('identified').details['parameters']
    assert rep['max_relative_change'] > 0.0        # the 2 kg payload moved them
    assert f'{rep["wrist_3_joint"]["mass"]:.3f}' in table
    # a report without a physics model has no such table
    assert evaluate(make_recording(500), 'naive', params=FAST).parameters_table() == ''


def test_jsonable_gives_plain_json_types_and_no_non_finite_numbers():
    data = {'a': np.array([1.0, np.nan, np.inf]), 2: (np.int64(3), np.bool_(True)),
            'b': [np.float32(0.5), -math.inf, None, 'x'], 'c': object}
    out = jsonable(data)
    assert out == {'a': [1.0, None, None], '2': [3, True], 'b': [0.5, None, None, 'x'],
                   'c': str(object)}
    assert type(out['2'][0]) is int and type(out['2'][1]) is bool
    json.dumps(out, allow_nan=False)
