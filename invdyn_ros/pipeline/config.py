"""``PipelineConfig``: everything the pipeline needs, built from the node's flat parameters.

The parameters themselves (names, defaults, types, ranges) are
:mod:`invdyn_ros.pipeline.parameters`' table; ``from_params`` checks each value there and adds the
rules that tie several together (options of each network, capped capacities and learning rates, the
filter's Nyquist check in ``FilterConfig.validate``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from invdyn_ros.errors import ConfigError
from invdyn_ros.learning.learner import LearnerConfig
from invdyn_ros.learning.models import make_config
from invdyn_ros.pipeline.parameters import PARAMETERS, PIPELINE_PARAMETERS, Param, check_all
from invdyn_ros.stages.estimation import FilterConfig
from invdyn_ros.stages.physics import PhysicsConfig, load_urdf_text

__all__ = ['PipelineConfig']

_UNREADY_FACTOR = Param('unready_factor', 'float', 1.5, 'ready is lost above this x ready_nmse',
                        lo=1.0)


def _default(name: str) -> Any:
    return PARAMETERS[name].default


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the pipeline needs; ``validate()`` raises ConfigError naming the parameter.

    ``learner`` configures the primary network (its ``model`` is the primary kind); the second
    network of the dual identifier (``dual_enabled``) is the same learner config with
    ``second_model`` / ``second_model_options`` and ``seed + 1``. ``torque_limits`` (N m, > 0 per
    joint) clamp every published torque; ``effort_scale`` (per joint, non-zero) converts the
    driver's effort to torque. ``ready``: the rolling nMSE of the published output over the last
    ``ready_window`` scored samples is below ``ready_nmse`` after at least ``ready_min_samples``
    and ``ready_min_seconds`` of scored stream time (``readiness.Readiness``);
    it is lost again only above ``unready_factor * ready_nmse`` (hysteresis, so the feedforward does
    not flicker between the prediction and zero near the threshold). ``poll_every``: samples
    between ``trainer.poll()`` calls.

    ``effort_label``: what the networks learn to predict for a window ending at sample k (whose
    filtered state describes the robot ``filter_delay_s`` before the stamp, see ``estimation``):

    * ``'filtered'`` (default): the effort through the same filter as the state, aligned with it
      at every frequency. Where the true torque has a step -- Coulomb friction flipping sign at a
      velocity reversal -- the label is the step smeared over the filter's response, and so is
      what the network learns.
    * ``'delayed'``: the measured effort itself, delayed by ``filter_delay_s`` (interpolated
      between the two nearest samples), unfiltered. For slow motion the delayed raw effort belongs
      to the same instant as the filtered state, so steps stay sharp; the label carries the
      effort's noise (the network learns its mean). Use it with clean efforts (joint torque
      sensors, a simulator), not with noisy motor currents. The identifier and the readiness
      score always compare predictions with the filtered effort.
    """

    joint_names: tuple[str, ...]
    filter: FilterConfig = field(default_factory=FilterConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    dual_enabled: bool = _default('dual_enabled')
    second_model: str = _default('second_model')
    second_model_options: dict = field(default_factory=dict)
    dual_window: int = _default('dual_window')
    dual_hysteresis: float = _default('dual_hysteresis')
    torque_limits: tuple | None = None
    effort_scale: tuple | None = None
    ready_nmse: float = _default('ready_nmse')
    ready_window: int = _default('ready_window')
    ready_min_samples: int = _default('ready_min_samples')
    ready_min_seconds: float = _default('ready_min_seconds')
    unready_factor: float = _UNREADY_FACTOR.default
    poll_every: int = _default('poll_every')
    effort_label: str = _default('effort_label')
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)

    def __post_init__(self) -> None:
        names = self.joint_names
        if isinstance(names, (list, tuple)):
            object.__setattr__(self, 'joint_names', tuple(names))
        object.__setattr__(self, 'second_model_options', dict(self.second_model_options or {}))
        for key in ('torque_limits', 'effort_scale'):
            value = getattr(self, key)
            if value is not None and not isinstance(value, (str, bytes)) \
                    and hasattr(value, '__len__'):
                object.__setattr__(self, key, None if len(value) == 0 else tuple(value))

    # ------------------------------------------------------------------ derived
    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def identification_filter(self) -> FilterConfig | None:
        """The filter of the identification's own estimator: ``filter`` at
        ``identification_cutoff_hz``, or None where the identification fits the estimator's
        states (0, or not below ``filter_cutoff_hz``: nothing to gain)."""
        c = self.physics.identification_cutoff_hz
        return dataclasses.replace(self.filter, cutoff_hz=c) \
            if 0.0 < c < self.filter.cutoff_hz else None

    @property
    def network_names(self) -> tuple[str, ...]:
        """Names of the networks, primary first (the trainer's and the predictors' keys)."""
        first = self.learner.model
        if not self.dual_enabled:
            return (first,)
        second = self.second_model if self.second_model != first else f'{self.second_model}_2'
        return (first, second)

    def networks(self) -> list[tuple[str, LearnerConfig]]:
        """``[(name, LearnerConfig)]`` for a trainer: the primary and (dual) the second network."""
        nets = [(self.network_names[0], self.learner)]
        if self.dual_enabled:
            second = dataclasses.replace(self.learner, model=self.second_model,
                                         model_options=dict(self.second_model_options),
                                         seed=self.learner.seed + 1)
            nets.append((self.network_names[1], second))
        return nets

    # ------------------------------------------------------------------ checks
    def validate(self) -> 'PipelineConfig':
        """Raise :class:`ConfigError` naming the first bad field (the fields that are node
        parameters are checked by that parameter's rule); returns self."""
        names = PARAMETERS['joint_names'].check(self.joint_names)
        n = len(names)
        if not isinstance(self.filter, FilterConfig):
            raise ConfigError('filter: expected a FilterConfig')
        try:
            self.filter.validate()
        except ConfigError as exc:
            raise ConfigError(_node_name_for(str(exc))) from None
        if not isinstance(self.learner, LearnerConfig):
            raise ConfigError('learner: expected a LearnerConfig')
        PARAMETERS['model'].check(self.learner.model)
        self.learner.validate()
        if PARAMETERS['dual_enabled'].check(self.dual_enabled):
            PARAMETERS['second_model'].check(self.second_model)
            make_config(self.second_model, n, **self.second_model_options)
        for name in ('dual_window', 'dual_hysteresis', 'torque_limits', 'effort_scale',
                     'ready_nmse', 'ready_window', 'ready_min_samples', 'poll_every',
                     'effort_label', 'ready_min_seconds'):
            PARAMETERS[name].check(getattr(self, name), n)
        _UNREADY_FACTOR.check(self.unready_factor)
        if not isinstance(self.physics, PhysicsConfig):
            raise ConfigError('physics: expected a PhysicsConfig')
        self.physics.validate()
        return self

    @property
    def predictor_labels(self) -> tuple[str, ...]:
        """What each network's prediction is, for people: ``rnea+lstm`` for the residual one."""
        return tuple(f'{self.physics.prior}+{n}' if n == self.residual_network else n
                     for n in self.network_names)

    @property
    def residual_network(self) -> str | None:
        """The network that learns ``tau - tau_prior`` (the primary one) when a prior is on."""
        return self.network_names[0] if self.physics.enabled else None

    # ------------------------------------------------------------------ from node parameters
    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> 'PipelineConfig':
        """Build from the node's flat parameters
        (:data:`invdyn_ros.pipeline.parameters.PARAMETERS`).

        Missing names (or None) take their defaults; the node-only names are accepted and
        ignored (one YAML file serves node and evaluator alike); any other name raises
        :class:`ConfigError` naming it (a typo in a YAML file must not silently fall back to a
        default). Every value is checked by its parameter's rule, then :meth:`validate` runs.
        """
        if not isinstance(params, Mapping):
            raise ConfigError(f'parameters must be a mapping, got {type(params).__name__}')
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise ConfigError(f'unknown parameter(s) {unknown}; accepted: {sorted(PARAMETERS)}')
        p = check_all(params, PIPELINE_PARAMETERS)
        model, second, dual = p['model'], p['second_model'], p['dual_enabled']
        hidden, layers, sign_gain = p['hidden_size'], p['num_layers'], p['velocity_sign_gain']

        def options(kind: str, hidden: int = hidden) -> dict:
            fields = {f.name for f in dataclasses.fields(type(make_config(kind, 1)))}
            opts = {'hidden_size': hidden}
            if 'num_layers' in fields:
                opts['num_layers'] = layers
            if sign_gain > 0:
                if 'velocity_sign_gain' not in fields:
                    raise ConfigError(f'velocity_sign_gain: only the lstm and gru networks take '
                                      f'sign features, not {kind!r} (set it to 0)')
                opts['velocity_sign_gain'] = sign_gain
            return opts

        filt = FilterConfig(order=p['filter_order'], cutoff_hz=p['filter_cutoff_hz'],
                            rate_hz=p['rate_hz'] if p['rate_hz'] > 0 else None,
                            max_gap_s=p['max_gap_s'], max_abs_position=p['max_abs_position'],
                            max_abs_velocity=p['max_abs_velocity'],
                            max_abs_effort=p['max_abs_effort'])
        learner = LearnerConfig(
            model=model, model_options=options(model), window=p['window'],
            batch_size=p['batch_size'], buffer_capacity=p['buffer_capacity'],
            recent_capacity=min(p['recent_capacity'], p['buffer_capacity']),
            recent_fraction=p['recent_fraction'], learning_rate=p['learning_rate'],
            min_learning_rate=min(p['min_learning_rate'], p['learning_rate']),
            weight_ema_decay=p['weight_ema_decay'], updates_per_sample=p['updates_per_sample'],
            min_samples=p['min_samples'], ready_nmse=p['ready_nmse'],
            ready_window=p['ready_window'], seed=p['seed'])
        # the second network's options matter only when it runs (networks(), validate())
        second_options = options(second, p['second_hidden_size'] or hidden) if dual else {}
        physics = PhysicsConfig(
            prior=p['prior'], urdf=load_urdf_text(p['robot_description'], p['urdf_path']),
            payload_mass_kg=p['payload_mass_kg'], payload_com=p['payload_com'],
            gravity=p['gravity'], identify=p['identify'],
            identification_memory_s=p['identification_memory_s'],
            identification_regularization=p['identification_regularization'],
            identification_cutoff_hz=p['identification_cutoff_hz'],
            coulomb_velocity=p['coulomb_velocity'],
            residual_trust_distance=p['residual_trust_distance'],
            feedforward_mode=p['feedforward_mode'],
            feedforward_fallback=p['feedforward_fallback'])
        config = cls(joint_names=p['joint_names'], filter=filt, learner=learner, physics=physics,
                     dual_enabled=dual, second_model=second, second_model_options=second_options,
                     dual_window=p['dual_window'], dual_hysteresis=p['dual_hysteresis'],
                     torque_limits=p['torque_limits'], effort_scale=p['effort_scale'],
                     ready_nmse=p['ready_nmse'], ready_window=p['ready_window'],
                     ready_min_samples=p['ready_min_samples'],
                     ready_min_seconds=p['ready_min_seconds'], poll_every=p['poll_every'],
                     effort_label=p['effort_label'])
        return config.validate()


_FILTER_PARAM_NAMES = {'order': 'filter_order', 'cutoff_hz': 'filter_cutoff_hz'}


def _node_name_for(message: str) -> str:
    """FilterConfig messages name its fields; say the node parameter's name instead."""
    if message.startswith('filter order'):
        return 'filter_order: ' + message
    for field_name, param in _FILTER_PARAM_NAMES.items():
        if message.startswith(field_name):
            return param + message[len(field_name):]
    return message
