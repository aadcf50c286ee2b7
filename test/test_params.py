"""Parameter errors of invdyn_node as a user meets them: the node runs as a real process with a
bad params file (or ``-p`` rule) and must exit with code 2 and ONE line naming the parameter, no
traceback. Also: a cutoff at or above Nyquist, with a configured rate (start-up error) and with a
measured one (known only at run time: an error in the log and /diagnostics, nothing published),
and the middleware's "messages lost" reports that must not wrap the counter."""
from __future__ import annotations

import re
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from test_node import REPO, Harness, log_of, node_env, start_node, stop_node

BASE = 'invdyn_node:\n  ros__parameters:\n'


def run_node(tmp_path, body: str | None, extra: tuple = ()) -> subprocess.CompletedProcess:
    args = [sys.executable, '-m', 'invdyn_ros.ros.node', '--ros-args']
    if body is not None:
        pfile = tmp_path / 'params.yaml'
        pfile.write_text(BASE + body)
        args += ['--params-file', str(pfile)]
    return subprocess.run(args + list(extra), cwd=str(REPO), env=node_env(), capture_output=True,
                          text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, name: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert 'Traceback' not in out, out[-3000:]
    lines = [line for line in out.splitlines() if line.strip()]
    errors = [line for line in lines if 'invalid parameter' in line]
    assert len(errors) == 1 and len(lines) == 1, out[-3000:]
    assert re.match(rf'\[invdyn_node\] invalid parameter: {name}[: ]', errors[0]), errors[0]
    return errors[0]


@pytest.mark.parametrize('body, name', [
    ('    joint_names: []\n    torque_limits: [1.0]\n', 'joint_names'),
    ('    joint_names: [a, b]\n    torque_limits: []\n', 'torque_limits'),
    ('    joint_names: [a, b]\n    torque_limits: [1.0, 2.0]\n    effort_scale: []\n',
     'effort_scale'),
    ('    joint_names: [a]\n    torque_limits: [1, \'a\']\n', 'torque_limits'),
    ('    joint_names: [a]\n    torque_limits:\n      - 1.0\n      - x\n', 'torque_limits'),
    ('    joint_names: [a, b]\n    torque_limits: abc\n', 'torque_limits'),
    ('    joint_names: [a]\n    torque_limits: [1.0]\n    window: [3]\n', 'window'),
    ('    joint_names: [a]\n    torque_limits: [1.0]\n    rate_hz: 100.0\n'
     '    filter_cutoff_hz: 50.0\n', 'filter_cutoff_hz'),
])
def test_bad_params_file_exits_2_with_one_line_naming_the_parameter(tmp_path, body, name):
    line = assert_one_line_error(run_node(tmp_path, body), name)
    if 'torque_limits: [1, ' in body:                     # rcl's own parse error: file and line
        assert 'params.yaml, line 4' in line


def test_mixed_type_list_in_a_command_line_rule(tmp_path):
    proc = run_node(tmp_path, None, ('-p', 'joint_names:=[a]', '-p', "torque_limits:=[1.0, 'x']"))
    assert_one_line_error(proc, 'torque_limits')


def test_ros_args_error_reduces_rcl_messages_to_one_line(tmp_path):
    from invdyn_ros.ros.node import ros_args_error

    pfile = tmp_path / 'p.yaml'
    pfile.write_text(BASE + '    joint_names: [a]\n    torque_limits:\n      - 1.0\n      - x\n')
    msg = (f"Failed to parse ROS arguments: Couldn't parse params file: '--params-file {pfile}'. "
           "Error: Sequence should be of same type. Value type 'string' do not belong at "
           "line_num 6, at /project/src/parse.c:435, at /project/src/rcl/arguments.c:415")
    assert ros_args_error(msg) == (f"torque_limits: Sequence should be of same type. Value type "
                                   f"'string' do not belong ({pfile}, line 6)")
    assert ros_args_error('something else\nand more') == 'something else and more'


def test_cutoff_above_nyquist_of_the_measured_rate_is_an_error_at_run_time(tmp_path):
    """rate_hz 0 (measured) and 30 Hz cutoff, joint states stamped at 40 Hz: the node logs one
    error naming filter_cutoff_hz, /diagnostics reports it at level ERROR, ~/predicted_effort
    stays silent and the feedforward zero."""
    names = ['a', 'b']
    pfile = tmp_path / 'params.yaml'
    pfile.write_text(BASE + '    joint_names: [a, b]\n    torque_limits: [5.0, 5.0]\n'
                     '    rate_hz: 0.0\n    filter_cutoff_hz: 30.0\n    trainer: inline\n'
                     '    model: mlp\n    dual_enabled: false\n    hidden_size: 8\n'
                     '    window: 3\n    diagnostics_period_s: 0.2\n')
    proc = start_node(['--ros-args', '--params-file', str(pfile)], tmp_path / 'node.log')
    h = Harness()
    try:
        h.wait_for_node(proc)
        stamp = 7000.0
        deadline = time.monotonic() + 60
        diag = None
        while time.monotonic() < deadline:
            for _ in range(10):
                h.send(stamp, names, [0.1, 0.2], [0.0, 0.0], [1.0, 1.0])
                stamp += 1 / 40.0
                time.sleep(0.005)
            errors = [d for d in h.diags if d.get('filter_error')]
            if errors:
                diag = errors[-1]
                break
        assert diag is not None, log_of(proc)[-3000:]
        assert 'filter_cutoff_hz' in diag['filter_error'] and diag['_level'] in (2, b'\x02')
        assert float(diag['rate_hz_estimated']) == pytest.approx(40.0, rel=1e-3)
        assert not h.outputs
        assert all(not any(ff) for ff in h.ff)
        assert stop_node(proc) == 0
        log = (tmp_path / 'node.log').read_text()
        assert sum('filter_cutoff_hz' in line and 'ERROR' in line
                   for line in log.splitlines()) == 1, log[-3000:]
        assert 'Traceback' not in log
    finally:
        h.close()
        if proc.poll() is None:
            proc.kill()


def test_lost_message_reports_cannot_wrap_the_counter():
    """A garbage / wrapped-around change (the probe saw 18446744075857035401) and a zero are
    ignored and counted apart; real changes add up; the counters stay plain ints."""
    from rclpy.event_handler import QoSMessageLostInfo
    from rclpy.parameter import Parameter

    from invdyn_ros.ros.node import InvdynNode

    ctx = Context()
    rclpy.init(context=ctx)
    node = None
    try:
        node = InvdynNode(context=ctx, parameter_overrides=[
            Parameter('joint_names', value=['a', 'b']),
            Parameter('torque_limits', value=[1.0, 1.0]), Parameter('trainer', value='inline'),
            Parameter('model', value='mlp'), Parameter('dual_enabled', value=False),
            Parameter('hidden_size', value=8)])
        for change in (3, 2 ** 64 - 5, 18446744075857035401, 0, -1, 2 ** 31 + 1, 4):
            node._on_lost(types.SimpleNamespace(total_count=0, total_count_change=change))
        node._on_lost(QoSMessageLostInfo())            # the real type: a zero change
        assert node.counters['lost'] == 7
        assert node.counters['lost_reports_ignored'] == 6
        assert all(type(v) is int and v >= 0 for v in node.counters.values())
        assert np.isfinite(node.counters['lost'])
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.shutdown(context=ctx)
