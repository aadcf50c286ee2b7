"""The node's own parameters, read and checked without ROS: :class:`NodeSettings` (what
:class:`~invdyn_ros.ros.node.InvdynNode` needs beyond
:class:`~invdyn_ros.pipeline.pipeline.PipelineConfig`), the range checks :func:`integer` /
:func:`positive`, :func:`needs_robot_model`, and
:func:`ros_args_error` (rcl's argument errors as one line naming the parameter).

Every error is a :class:`~invdyn_ros.errors.ConfigError` whose text starts with the parameter's
name (the node exits with code 2 and prints it).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from invdyn_ros.errors import ConfigError
from invdyn_ros.pipeline.parameters import PARAMETERS
from invdyn_ros.pipeline.pipeline import TRAINER_KINDS

EXECUTORS = PARAMETERS['executor'].choices
CHECKPOINT_MISMATCH = PARAMETERS['checkpoint_mismatch'].choices


def integer(name: str, value: Any, lo: int, hi: int | None = None, note: str = '') -> int:
    """``value`` if it is an int (not a bool) in ``lo..hi`` (``hi`` None: ``>= lo``), else a
    ConfigError naming the parameter (``note`` explains the range)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo \
            or (hi is not None and value > hi):
        allowed = f'>= {lo}' if hi is None else f'in {lo}..{hi}'
        raise ConfigError(f'{name}: must be an integer {allowed}{note}, got {value!r}')
    return value


def positive(name: str, value: Any, allow_zero: bool = False) -> float:
    """``value`` as a float if it is a finite number > 0 (``allow_zero``: >= 0), else a
    ConfigError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f'{name}: must be a finite number {">=" if allow_zero else ">"} 0, '
                          f'got {value!r}')
    return float(value)


@dataclass(frozen=True)
class NodeSettings:
    """The node-side parameters, checked (the pipeline's are :class:`PipelineConfig`)."""
    trainer: str
    stale_timeout_s: float
    checkpoint_period_s: float
    diagnostics_period_s: float
    publish_period_s: float
    max_updates_per_sample: float
    aux_decimation: int
    checkpoint_path: str                  # expanded (``~``), stripped; '' = no checkpoints
    checkpoint_mismatch: str
    trainer_nice: int
    trajectory_max_point_dt: float = 0.0

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> 'NodeSettings':
        """From the parameter dict; the first invalid value raises its ConfigError."""
        trainer = p['trainer']
        if trainer not in TRAINER_KINDS:
            raise ConfigError(f'trainer: must be one of {TRAINER_KINDS}, got {trainer!r}')
        stale_timeout_s = positive('stale_timeout_s', p['stale_timeout_s'])
        checkpoint_period_s = positive('checkpoint_period_s', p['checkpoint_period_s'],
                                       allow_zero=True)
        diagnostics_period_s = positive('diagnostics_period_s', p['diagnostics_period_s'])
        publish_period_s = positive('publish_period_s', p['publish_period_s'])
        max_updates = positive('max_updates_per_sample', p['max_updates_per_sample'],
                               allow_zero=True)
        aux_decimation = integer('aux_decimation', p['aux_decimation'], 1)
        if not isinstance(p['checkpoint_path'], str):
            raise ConfigError(f'checkpoint_path: expected a string, got {p["checkpoint_path"]!r}')
        checkpoint_path = os.path.expanduser(p['checkpoint_path'].strip())
        mismatch = p['checkpoint_mismatch']
        if mismatch not in CHECKPOINT_MISMATCH:
            raise ConfigError(f'checkpoint_mismatch: must be one of {CHECKPOINT_MISMATCH}, got '
                              f'{mismatch!r}')
        trainer_nice = integer('trainer_nice', p['trainer_nice'], 0, 19)
        max_point_dt = positive('trajectory_max_point_dt', p['trajectory_max_point_dt'],
                                allow_zero=True)
        return cls(trainer, stale_timeout_s, checkpoint_period_s, diagnostics_period_s,
                   publish_period_s, max_updates, aux_decimation, checkpoint_path, mismatch,
                   trainer_nice, max_point_dt)


def process_settings(p: dict[str, Any]) -> tuple[str, int]:
    """(executor, realtime_priority): the process's own settings, checked."""
    executor = p['executor']
    if executor not in EXECUTORS:
        raise ConfigError(f'executor: must be one of {EXECUTORS}, got {executor!r}')
    return executor, integer('realtime_priority', p['realtime_priority'], 0, 99,
                             ' (0 = normal scheduling)')


def needs_robot_model(p: dict[str, Any]) -> bool:
    """A prior or minus_gravity is asked for, and neither robot_description nor urdf_path
    is set: the model has to come from the topic."""
    wanted = p.get('prior', 'none') != 'none' or p.get('feedforward_mode') == 'minus_gravity'
    given = any(isinstance(p.get(k), str) and p[k].strip()
                for k in ('robot_description', 'urdf_path'))
    return wanted and not given


def ros_args_error(message: str) -> str:
    """One line for rcl's argument errors (e.g. a list of mixed types in a params file or a
    ``-p`` rule): the parameter (for a file: the key of the failing line or of the block it is
    in), the file and line, and rcl's reason without its source locations."""
    import re
    text = ' '.join(message.split())
    found = re.search(r"Error: (.*?)(?: at line_num (\d+)|, at /|$)", text)
    reason = found.group(1).rstrip(' .,') if found else text
    rule = re.search(r"-p ([A-Za-z_][\w.]*):=", text)
    if rule:
        return f'{rule.group(1)}: {reason} (-p rule)'
    params = re.search(r"--params-file (.+?)'", text)
    if not params or not found or not found.group(2):
        return reason
    path, line = params.group(1), int(found.group(2))
    name = ''
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()[:line]
        indent = None
        for raw in reversed(lines):            # the key of the line, or of the block it is in
            stripped = raw.split('#', 1)[0].rstrip()
            key = re.match(r'^(\s*)([A-Za-z_][\w.]*)\s*:', stripped)
            if key and (indent is None or len(key.group(1)) < indent):
                name = key.group(2)
                break
            if stripped.strip() and indent is None:
                indent = len(stripped) - len(stripped.lstrip())
    except OSError:
        pass
    return f'{name}: {reason} ({path}, line {line})' if name else f'{path}, line {line}: {reason}'
