#!/usr/bin/env python3
"""Per-message cost of the JointState rule (``invdyn_ros/stages/joint_state.py``) on rclpy messages.

The node runs the rule at the start of every ``/joint_states`` callback, before the pipeline. This
times it in a warm loop (best of 5 repeats) for 7 joints: names in the configured order (the
identity fast path: float64 views of the message arrays), names in another order plus an extra
joint (an index gather), and a message whose extra joint holds NaN (the exact finiteness check
on the used joints runs).

Usage::

    python bench/joint_state_rule.py [--number 20000]
"""
from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, not an installed copy

from sensor_msgs.msg import JointState  # noqa: E402

from invdyn_ros.stages.joint_state import JointStateRule  # noqa: E402

NAMES = [f'joint_{i}' for i in range(1, 8)]


def message(names: list[str], extra: float | None = None) -> JointState:
    msg = JointState()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000, 123
    msg.name = list(names) + (['gripper'] if extra is not None else [])
    k = len(msg.name)
    msg.position = [0.1 * i for i in range(len(names))] + ([extra] if extra is not None else [])
    msg.velocity = [0.2] * k
    msg.effort = [0.3] * k
    return msg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--number', type=int, default=20000, help='calls per repeat')
    args = parser.parse_args(argv)
    cases = {
        'configured order': message(NAMES),
        'reordered + extra joint': message(list(reversed(NAMES)), extra=0.5),
        'reordered + NaN in the extra joint': message(list(reversed(NAMES)), extra=float('nan')),
    }
    for label, msg in cases.items():
        rule = JointStateRule(NAMES)
        assert isinstance(rule(msg), tuple), label
        best = min(timeit.repeat(lambda: rule(msg), number=args.number, repeat=5))
        print(f'{label:36s} {1e6 * best / args.number:6.2f} us per message')
    return 0


if __name__ == '__main__':
    sys.exit(main())
