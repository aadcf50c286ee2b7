"""The one parameter table: every parameter of ``invdyn_node`` once, with its default, type and
range, description, and whether only the node (not the pipeline) reads it.

Everything else derives from :data:`PARAMETERS`:

* :meth:`invdyn_ros.pipeline.config.PipelineConfig.from_params` takes its defaults and checks every
  value with :meth:`Param.check` (the one validator family: int / float / bool / str / choice / list
  of floats / list of names, with ranges and list-length rules), and so do the config's ``validate``
  for the fields that are parameters;
* the node declares each parameter with :func:`descriptor_fields` (description, type and range as
  ``additional_constraints``) and checks the values with :func:`check_all`;
* ``invdyn_node --help`` prints :func:`help_lines`;
* the README's parameter table is :func:`markdown_table` (``python -m
  invdyn_ros.pipeline.parameters`` prints it; ``test_parameters.py`` fails when the README's copy
  differs).

The derived views ``PIPELINE_PARAMETERS`` / ``NODE_ONLY_PARAMETERS`` (name -> default) and
``PARAMETER_DOCS`` (name -> (default, description), the parameters the node declares) keep their
old shapes for the code that reads them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from invdyn_ros.errors import ConfigError
from invdyn_ros.learning.models import MODEL_KINDS
from invdyn_ros.learning.training import TRAINER_KINDS
from invdyn_ros.stages.identification import COULOMB_VELOCITY_CANDIDATES, JOINT_WEIGHT_MAX
from invdyn_ros.stages.physics import (FEEDFORWARD_FALLBACKS, FEEDFORWARD_MODES,
                                       FIXED_COULOMB_VELOCITY, PRIORS)

__all__ = ['Param', 'PARAMETERS', 'PIPELINE_PARAMETERS', 'NODE_ONLY_PARAMETERS', 'PARAMETER_DOCS',
           'EFFORT_LABELS', 'check_all', 'descriptor_fields', 'help_lines', 'markdown_table']

EFFORT_LABELS = ('filtered', 'delayed')
KINDS = ('int', 'float', 'bool', 'str', 'choice', 'floats', 'names')


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Param:
    """One parameter. ``kind``: ``int`` | ``float`` (finite) | ``bool`` | ``str`` | ``choice``
    (one of ``choices``) | ``floats`` (a list of finite numbers; empty or None = not set unless
    ``length`` is a number; ``length='joints'``: one per joint; ``element``: ``'positive'`` or
    ``'nonzero'``) | ``names`` (a non-empty list of distinct non-empty strings).
    ``lo`` / ``hi``: the range (``lo_open`` / ``hi_open``: the bound itself is excluded).
    ``default`` None: not set (``required``: the node needs it). ``builtin``: rclpy declares it."""

    name: str
    kind: str
    default: Any
    doc: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    length: int | str | None = None
    element: str = ''
    node_only: bool = False
    required: bool = False
    builtin: bool = False

    # ------------------------------------------------------------------ checks
    def check(self, value: Any, n_joints: int | None = None) -> Any:
        """``value`` as this parameter's Python type (int, float, bool, str, a tuple for lists;
        None for an unset list), else :class:`ConfigError` naming the parameter. ``n_joints``:
        for ``length='joints'`` (not checked while None)."""
        return getattr(self, '_check_' + self.kind)(value, n_joints)

    def _fail(self, what: str, value: Any) -> ConfigError:
        return ConfigError(f'{self.name}: {what}, got {value!r}')

    def _in_range(self, v: float) -> bool:
        lo_ok = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        hi_ok = self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)
        return lo_ok and hi_ok

    def _check_int(self, value: Any, n_joints: int | None) -> int:
        v = int(value) if isinstance(value, float) and value.is_integer() else value
        if not _is_int(v):
            raise self._fail('expected an integer', value)
        if not self._in_range(int(v)):
            raise self._fail(f'must be an integer {self.range_text()}', value)
        return int(v)

    def _check_float(self, value: Any, n_joints: int | None) -> float:
        if not _is_number(value) or not math.isfinite(float(value)):
            raise self._fail('expected a finite number', value)
        if not self._in_range(float(value)):
            raise self._fail(f'must be a finite number {self.range_text()}', value)
        return float(value)

    def _check_bool(self, value: Any, n_joints: int | None) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise self._fail('expected true or false', value)
        return bool(value)

    def _check_str(self, value: Any, n_joints: int | None) -> str:
        if not isinstance(value, str):
            raise self._fail('expected a string', value)
        return value

    def _check_choice(self, value: Any, n_joints: int | None) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise self._fail(f'must be one of {self.choices}', value)
        return value

    def _check_floats(self, value: Any, n_joints: int | None) -> tuple[float, ...] | None:
        if value is not None and (isinstance(value, (str, bytes)) or not hasattr(value, '__len__')):
            raise self._fail('expected a list of numbers', value)
        if value is None or len(value) == 0:
            if isinstance(self.length, int):
                raise self._fail(f'need {self.length} numbers', value)
            return None
        if not all(_is_number(v) for v in value):
            raise self._fail('expected a list of numbers', list(value))
        out = tuple(float(v) for v in value)
        if not all(math.isfinite(v) for v in out):
            raise self._fail('values must be finite', list(out))
        size = n_joints if self.length == 'joints' else self.length
        bad_element = (self.element == 'positive' and min(out) <= 0.0) or \
            (self.element == 'nonzero' and 0.0 in out)
        if (size is not None and len(out) != size) or bad_element:
            per = ' (one per joint in joint_names order)' if self.length == 'joints' else ''
            raise self._fail(f'need {size if size is not None else "the"} values'
                             f'{self._element_text()}{per}', list(out))
        return out

    def _check_names(self, value: Any, n_joints: int | None) -> tuple[str, ...]:
        if value is None or isinstance(value, (str, bytes)) or not hasattr(value, '__iter__'):
            raise self._fail('required, a non-empty list of non-empty strings', value)
        names = tuple(value)
        if not names or not all(isinstance(j, str) and j.strip() for j in names):
            raise self._fail('required, a non-empty list of non-empty strings', list(names))
        if len(set(names)) != len(names):
            raise self._fail('must be unique', list(names))
        return names

    # ------------------------------------------------------------------ text
    def _element_text(self) -> str:
        return {'positive': ' > 0', 'nonzero': ' non-zero'}.get(self.element, '')

    def range_text(self) -> str:
        """``>= 1``, ``> 0``, ``in [0, 1)``, ``in 0..19`` or ``''``."""
        if self.lo is not None and self.hi is not None:
            if self.kind == 'int':
                return f'in {self.lo:g}..{self.hi:g}'
            return (f'in {"(" if self.lo_open else "["}{self.lo:g}, '
                    f'{self.hi:g}{")" if self.hi_open else "]"}')
        if self.lo is not None:
            return f'{">" if self.lo_open else ">="} {self.lo:g}'
        if self.hi is not None:
            return f'{"<" if self.hi_open else "<="} {self.hi:g}'
        return ''

    def type_text(self) -> str:
        """The type and range for people: ``int >= 1``, ``lstm | gru``, ``floats (3)``."""
        if self.kind == 'choice':
            return ' | '.join(self.choices)
        if self.kind == 'floats':
            size = {None: '', 'joints': ', one per joint'}.get(self.length, f', {self.length}')
            return f'floats{size}{self._element_text()}'
        if self.kind == 'names':
            return 'strings, one per joint'
        return f'{self.kind} {self.range_text()}'.strip()

    @property
    def description(self) -> str:
        return ('REQUIRED. ' if self.required else '') + self.doc


def _p(name: str, kind: str, default: Any, doc: str, **rules: Any) -> Param:
    return Param(name, kind, default, doc, **rules)


def _node(name: str, kind: str, default: Any, doc: str, **rules: Any) -> Param:
    return Param(name, kind, default, doc, node_only=True, **rules)


POSITIVE = {'lo': 0.0, 'lo_open': True}
NON_NEGATIVE = {'lo': 0.0}

#: Every parameter once, in the order of ``--help`` and the README.
PARAMETERS: dict[str, Param] = {p.name: p for p in (
    _p('joint_names', 'names', None,
       'Joint names; the order of every output and of ~/reference', required=True),
    _p('model', 'choice', 'lstm', 'primary network', choices=MODEL_KINDS),
    _p('second_model', 'choice', 'gru', 'second network of the dual identifier',
       choices=MODEL_KINDS),
    _p('second_hidden_size', 'int', 0, 'hidden units of the second network (0 = hidden_size)',
       lo=0),
    _p('hidden_size', 'int', 64, 'hidden units of both networks', lo=1),
    _p('num_layers', 'int', 2, 'recurrent layers of both networks', lo=1),
    _p('velocity_sign_gain', 'float', 0.0,
       '0 = off; > 0: lstm / gru networks also get tanh(gain x scaled velocity) per joint, a '
       'smooth sign(qd) for Coulomb friction (e.g. 20)', **NON_NEGATIVE),
    _p('window', 'int', 10, 'samples per input window', lo=1),
    _p('batch_size', 'int', 128, 'training batch size', lo=1),
    _p('buffer_capacity', 'int', 20000, 'replay buffer size (windows)', lo=1),
    _p('recent_capacity', 'int', 2000, 'newest windows kept in FIFO order within the buffer '
       '(capped at buffer_capacity)', lo=0),
    _p('recent_fraction', 'float', 0.5,
       'share of each batch drawn from the newest windows (the rest from the reservoir of older '
       'ones); 1 = learn from recent motion only, fastest re-learning after the dynamics change',
       lo=0.0, hi=1.0),
    _p('learning_rate', 'float', 1e-3, 'Adam learning rate', **POSITIVE),
    _p('min_learning_rate', 'float', 1e-5,
       'floor of the plateau decay (capped at learning_rate); a higher floor keeps lifelong '
       'learning quick to follow changes', **NON_NEGATIVE),
    _p('weight_ema_decay', 'float', 0.0,
       'predict with an exponential moving average of the weights over the Adam steps (e.g. '
       '0.99: smoother, ~100 steps behind); 0 = the last iterate', lo=0.0, hi=1.0, hi_open=True),
    _p('updates_per_sample', 'float', 0.1, 'Adam steps per learned sample that always happen',
       lo=0.0, hi=64.0),
    _node('max_updates_per_sample', 'float', 1.0,
          'cap of steps per sample when the trainer has spare time', **NON_NEGATIVE),
    _p('min_samples', 'int', 256, 'samples before training starts', lo=0),
    _p('seed', 'int', 0, 'seed of the network initialisation and replay sampling', lo=0),
    _p('filter_order', 'int', 2, 'Butterworth order of each of the two low-pass stages',
       lo=1, hi=8),
    _p('filter_cutoff_hz', 'float', 30.0, 'low-pass cutoff (Hz)', **POSITIVE),
    _p('rate_hz', 'float', 0.0,
       'nominal joint state rate (Hz); 0 = measured from the first stamps', **NON_NEGATIVE),
    _p('max_gap_s', 'float', 0.05,
       'a longer gap between stamps restarts the filters and windows; a shorter one goes through '
       'the filters as one step (keep it to a few tens of ms: README "A gap in the joint states")',
       **POSITIVE),
    _p('max_abs_position', 'float', 100.0, 'larger |position| (rad or m) is rejected as corrupt',
       **POSITIVE),
    _p('max_abs_velocity', 'float', 100.0,
       'larger |velocity| (rad/s or m/s) is rejected as corrupt', **POSITIVE),
    _p('max_abs_effort', 'float', 1e4,
       'larger |effort * effort_scale| (N m or N) is rejected as corrupt', **POSITIVE),
    _p('dual_enabled', 'bool', True,
       'run two networks and pick per joint the one with the smaller error'),
    _p('dual_window', 'int', 200,
       'samples in the rolling identification-error window; the shipped configs: 1 s at their '
       'rate (a longer window chose the better network too late on the real recordings)', lo=2),
    _p('dual_hysteresis', 'float', 0.1,
       'switch only when the other error std is this fraction smaller',
       lo=0.0, hi=1.0, hi_open=True),
    _p('ready_nmse', 'float', 0.1,
       'ready (non-zero feedforward) once the rolling nMSE is below this', **POSITIVE),
    _p('ready_window', 'int', 500, 'samples in the rolling nMSE', lo=1),
    _p('ready_min_samples', 'int', 1000, 'scored samples needed before ready', lo=0),
    _p('ready_min_seconds', 'float', 0.0,
       'seconds of scored stream time (sample stamps; gaps count up to max_gap_s) also needed '
       'before ready: the floor in time, the same at any rate; 0 = the sample count alone',
       **NON_NEGATIVE),
    _p('torque_limits', 'floats', None, '|torque| limit per joint (N m); clamps every output',
       length='joints', element='positive', required=True),
    _p('effort_scale', 'floats', None, 'per joint factor: torque = effort * scale (UR drivers '
       'may report motor current); unset = 1', length='joints', element='nonzero'),
    _p('poll_every', 'int', 100, 'samples between checks for new weights from the trainer',
       lo=1),
    _p('effort_label', 'choice', 'filtered',
       'what the networks learn: filtered (the effort through the state\'s low-pass) | delayed '
       '(the raw effort delayed by the filter delay: keeps friction steps sharp; for clean '
       'efforts)', choices=EFFORT_LABELS),
    _node('trainer', 'choice', 'process', 'where training runs', choices=TRAINER_KINDS),
    _node('publish_period_s', 'float', 1.0, 'the trainer sends new weights this often (s)',
          **POSITIVE),
    _node('checkpoint_path', 'str', '', 'checkpoint prefix (files <prefix>.<network>.pt and '
          '<prefix>.manifest.json); empty = none'),
    _node('checkpoint_period_s', 'float', 300.0,
          'periodic checkpoint (s); 0 = only on shutdown and service', **NON_NEGATIVE),
    _node('checkpoint_mismatch', 'choice', 'refuse',
          'a checkpoint at checkpoint_path that does not fit this robot (joint names, networks) '
          'or is corrupt is never touched. refuse: the node exits (code 2) naming it; fresh: '
          'learning starts fresh with checkpoints at <prefix>-<robot id> beside it (resumed from '
          'there later)', choices=('refuse', 'fresh')),
    _node('stale_timeout_s', 'float', 0.1, 'input / reference older than this (s) is stale',
          **POSITIVE),
    _node('diagnostics_period_s', 'float', 1.0, '/diagnostics period (s)', **POSITIVE),
    _node('trajectory_max_point_dt', 'float', 0.0,
          '~/trajectory_in points further apart than this (s) get points inserted between them '
          'on the spline JTC itself interpolates (only where the points have velocities; the '
          'motion is unchanged), so the efforts JTC interpolates linearly follow the dynamics; '
          '0 = the points as planned. MoveIt resamples at 0.1 s by default: 0.02 tracked 1.8x '
          'better there (bench/trajectory_feedforward.py)', **NON_NEGATIVE),
    _node('aux_decimation', 'int', 10, 'publish ~/identifier and ~/uncertainty every N outputs',
          lo=1),
    _node('executor', 'choice', 'events',
          'events (rclpy EventsExecutor) | single (SingleThreadedExecutor)',
          choices=('events', 'single')),
    _node('trainer_nice', 'int', 10, 'nice increment of the trainer process / thread (0..19): '
          'the control loop preempts training when they share a core', lo=0, hi=19),
    _node('realtime_priority', 'int', 0,
          'SCHED_FIFO priority (1..99) of the control-loop thread (the one that runs the '
          "callbacks) and of the middleware's receive threads that hand it its messages; 0 = "
          'normal scheduling. Needs CAP_SYS_NICE or an rtprio limit; if refused the node warns '
          'and runs normally', lo=0, hi=99),
    _p('prior', 'choice', 'none',
       'physics prior: none (black-box networks only) | rnea (the URDF model with '
       'online-identified parameters; the primary network learns the residual, the second '
       'network stays black-box)', choices=PRIORS),
    _p('robot_description', 'str', '',
       'the URDF as XML text (as robot_state_publisher\'s parameter); wins over urdf_path. '
       'Neither set and a model needed: the node waits for the robot_description topic '
       '(transient local)'),
    _p('urdf_path', 'str', '', 'URDF file of the robot (used when robot_description is empty)'),
    _p('payload_mass_kg', 'float', 0.0, 'known tool / payload mass at the last joint (kg)',
       **NON_NEGATIVE),
    _p('payload_com', 'floats', [0.0, 0.0, 0.0],
       'its centre of mass in the last joint\'s frame (m)', length=3),
    _p('gravity', 'floats', [0.0, 0.0, -9.81],
       'gravity in the URDF base frame (m/s^2; a wall or ceiling mount differs)', length=3),
    _p('identify', 'bool', True,
       'identify the model\'s inertial and friction parameters online'),
    _p('identification_memory_s', 'float', 30.0,
       'time constant of the identification\'s forgetting (s): how fast it follows slow changes '
       '(a payload change is detected and released at once)', **POSITIVE),
    _p('identification_regularization', 'float', 0.01,
       'pull toward the URDF\'s nominal parameters ((N m)^2 per squared relative deviation, '
       'for the joint whose torque varies most; another joint\'s errors weigh more by that '
       f'torque variance over its own, at most {JOINT_WEIGHT_MAX:g}x)',
       **POSITIVE),
    _p('identification_cutoff_hz', 'float', 10.0,
       'low-pass cutoff (Hz) of the states and torques the identification fits: an estimator of '
       'its own (same order) keeps acceleration noise out of the regressor, where it biases the '
       'identified inertias low; 0 or >= filter_cutoff_hz: the estimator\'s states',
       **NON_NEGATIVE),
    _p('coulomb_velocity', 'float', 0.0,
       'velocity scale (rad/s) of the smooth Coulomb friction sign tanh(qd / v); 0: identified '
       f'(chosen among {1e3 * min(COULOMB_VELOCITY_CANDIDATES):g} mrad/s .. '
       f'{max(COULOMB_VELOCITY_CANDIDATES):g} rad/s by the fit; {FIXED_COULOMB_VELOCITY:g} when '
       'identify is false)',
       **NON_NEGATIVE),
    _p('residual_trust_distance', 'float', 0.5,
       'distance (std of the visited states) beyond which the learned residual fades toward the '
       'physics model', **POSITIVE),
    _p('feedforward_mode', 'choice', 'total',
       'what ~/feedforward carries: total (the predicted torque) | minus_gravity (predicted '
       'torque minus the model\'s gravity torque: for KUKA FRI, UR direct torque and Franka '
       'torque interfaces, which add their own gravity compensation)',
       choices=FEEDFORWARD_MODES),
    _p('feedforward_fallback', 'choice', 'prior',
       'with a prior, what ~/feedforward carries while the learned prediction is not ready: '
       'prior (the physics model alone, only while it passes the same readiness test on the '
       'measured torques) | zeros', choices=FEEDFORWARD_FALLBACKS),
    _node('robot_description_timeout_s', 'float', 0.0,
          'give up waiting for the robot_description topic after this long (s; exit code 1); '
          '0 = wait forever', **NON_NEGATIVE),
    _node('autostart', 'bool', True,
          'lifecycle: configure and activate at start-up without a lifecycle manager; false: '
          'the node waits unconfigured for ~/change_state (a manager, ros2 lifecycle set)'),
    _node('use_sim_time', 'bool', False, 'use /clock (declared by rclpy)', builtin=True),
)}


def _list_default(p: Param) -> Any:
    return [] if p.default is None and p.kind in ('floats', 'names') else p.default


#: name -> default of the parameters ``PipelineConfig.from_params`` reads ([] = not set).
PIPELINE_PARAMETERS: dict[str, Any] = {p.name: _list_default(p) for p in PARAMETERS.values()
                                       if not p.node_only}
#: name -> default of the node's own parameters (accepted and ignored by ``from_params``).
NODE_ONLY_PARAMETERS: dict[str, Any] = {p.name: p.default for p in PARAMETERS.values()
                                        if p.node_only}
#: name -> (default, description) of every parameter the node declares (None: not set).
PARAMETER_DOCS: dict[str, tuple[Any, str]] = {p.name: (p.default, p.description)
                                              for p in PARAMETERS.values() if not p.builtin}


def check_all(values: Mapping[str, Any], names: Iterable[str] | None = None) -> dict[str, Any]:
    """Every parameter of ``names`` (default: all) checked: ``values``' entry, or the default
    where it is missing or None, through :meth:`Param.check` (list lengths against the joint
    names, which are checked first). Unknown names in ``values`` are ignored here."""
    wanted = list(PARAMETERS if names is None else names)
    def value(name: str) -> Any:
        v = values.get(name)
        return PARAMETERS[name].default if v is None else v
    n_joints = None
    out: dict[str, Any] = {}
    if 'joint_names' in wanted:
        out['joint_names'] = PARAMETERS['joint_names'].check(value('joint_names'))
        n_joints = len(out['joint_names'])
    for name in wanted:
        if name not in out:
            out[name] = PARAMETERS[name].check(value(name), n_joints)
    return out


def descriptor_fields(name: str) -> dict[str, Any]:
    """Keyword arguments of ``rcl_interfaces.msg.ParameterDescriptor`` for ``name``: the
    description and, as ``additional_constraints``, its type and range. Declared with dynamic
    typing (an integer YAML value for a float parameter is fine; a wrong type is reported by
    :meth:`Param.check` as one line naming the parameter), so rclpy keeps the value's own type
    in the descriptor's ``type``."""
    p = PARAMETERS[name]
    return {'description': p.description, 'additional_constraints': p.type_text(),
            'dynamic_typing': True, 'read_only': True}


def help_lines() -> list[str]:
    """``invdyn_node --help``'s parameter list, one line each."""
    return [f'  {p.name} ({p.type_text()}, default {p.default!r}): {p.description}'
            for p in PARAMETERS.values() if not p.builtin]


def _cell(text: str) -> str:
    return text.replace('|', '\\|')


def markdown_table() -> str:
    """The README's parameter table (``python -m invdyn_ros.pipeline.parameters`` prints it)."""
    rows = ['| parameter | type / range | default | description |', '|---|---|---|---|']
    for p in PARAMETERS.values():
        if p.builtin:
            continue
        default = 'not set' if p.default is None else f'`{p.default!r}`'
        scope = ' (node only)' if p.node_only else ''
        rows.append(f'| `{p.name}`{scope} | {_cell(p.type_text())} | {_cell(default)} | '
                    f'{_cell(p.description)} |')
    return '\n'.join(rows) + '\n'


if __name__ == '__main__':
    print(markdown_table(), end='')
