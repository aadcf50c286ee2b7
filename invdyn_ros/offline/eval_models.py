"""The evaluator's models and protocols: names, defaults, and the node parameters of each.

``MODELS`` lists what :func:`invdyn_ros.offline.evaluation.evaluate` can score (see its module
docstring for what each model is); :func:`pipeline_params` is the one place that says how a model
name becomes the node's flat parameters for its :class:`~invdyn_ros.pipeline.pipeline.Pipeline`
(network kind, ``dual_enabled``, ``prior``). ROS-free; re-exported by
:mod:`invdyn_ros.offline.evaluation`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from invdyn_ros.errors import ConfigError

__all__ = ['NETWORK_MODELS', 'BASELINE_MODELS', 'PHYSICS_MODELS', 'RESIDUAL_MODELS', 'MODELS',
           'PROTOCOLS', 'DEFAULT_EPOCHS', 'DEFAULT_GP_SAMPLES', 'DEFAULT_GP_REFIT_EVERY',
           'ProgressFn', 'parse_models', 'pipeline_params', 'pipeline_filter']

NETWORK_MODELS: tuple[str, ...] = ('lstm', 'gru', 'mlp', 'va_sta_reslstm')
BASELINE_MODELS: tuple[str, ...] = ('naive', 'gp')
#: need the robot model (``urdf_path`` / ``robot_description``): the URDF's nominal model
#: (``rnea``), the model with parameters identified on the training part (``identified``), and
#: each network learning the residual of the identified model (``residual_<network>``). With a
#: URDF, ``dual`` is the physics + residual network beside the black-box second network.
PHYSICS_MODELS: tuple[str, ...] = ('rnea', 'identified')
RESIDUAL_MODELS: tuple[str, ...] = tuple(f'residual_{m}' for m in NETWORK_MODELS)
MODELS: tuple[str, ...] = NETWORK_MODELS + ('gp', 'naive', 'dual') + PHYSICS_MODELS + \
    RESIDUAL_MODELS
PROTOCOLS: tuple[str, ...] = ('split', 'prequential')

#: Extra passes over the replay buffer after the training stream (split protocol). Measured on
#: the KUKA-I bag (16k training samples, 125 batches of 128 per pass; LSTM test nMSE): 0 epochs
#: 0.132, 30 epochs 0.116, 80 epochs 0.119 -- converged at ~30, which costs 3750 Adam steps, about
#: 1-1.5 min for an LSTM on one (shared) CPU core.
DEFAULT_EPOCHS = 30
DEFAULT_GP_SAMPLES = 1000
DEFAULT_GP_REFIT_EVERY = 500

ProgressFn = Callable[[str, int, int], None]


def parse_models(models: str | Iterable[str]) -> list[str]:
    """Validate a model list ('lstm,naive' or a sequence); unknown names raise ConfigError."""
    items = [m.strip() for m in models.split(',')] if isinstance(models, str) else \
        [str(m).strip() for m in models]
    items = [m for m in items if m]
    if not items:
        raise ConfigError(f'models: give at least one of {", ".join(MODELS)}')
    unknown = [m for m in items if m not in MODELS]
    if unknown:
        raise ConfigError(f'models: unknown model(s) {", ".join(unknown)}; expected a comma list '
                          f'of {", ".join(MODELS)}')
    return list(dict.fromkeys(items))   # drop duplicates, keep order


def pipeline_params(base: Mapping[str, Any], model: str, joint_names: Sequence[str],
                    seed: int) -> dict[str, Any]:
    params = dict(base)
    params['joint_names'] = list(joint_names)
    params['seed'] = int(seed)
    has_urdf = bool(params.get('robot_description') or params.get('urdf_path'))
    if model == 'dual':
        params['dual_enabled'] = True
        if has_urdf and params.get('prior', 'none') == 'none':
            params['prior'] = 'rnea'
    elif model in RESIDUAL_MODELS:
        params['model'] = model[len('residual_'):]
        params['dual_enabled'] = False
        params['prior'] = 'rnea'
    else:                                   # a black-box network: no prior
        params['model'] = model
        params['dual_enabled'] = False
        params['prior'] = 'none'
    return params


def pipeline_filter(params: Mapping[str, Any], joint_names: Sequence[str], seed: int
                    ) -> tuple[Any, Any]:
    """The FilterConfig and effort_scale the pipeline would use for these parameters."""
    from invdyn_ros.pipeline.pipeline import PipelineConfig

    config = PipelineConfig.from_params(pipeline_params(params, 'dual', joint_names, seed))
    return config.filter, config.effort_scale

