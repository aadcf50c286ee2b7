"""The evaluator's results: :class:`ModelResult`, :class:`Series` and :class:`EvalReport`.

:meth:`EvalReport.to_json` is the content of metrics.json (:func:`jsonable`: plain JSON types,
never NaN/Inf); :meth:`EvalReport.table` / :meth:`EvalReport.parameters_table` the text tables
``invdyn_eval`` prints. ROS-free; re-exported by :mod:`invdyn_ros.offline.evaluation`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ['ModelResult', 'Series', 'EvalReport', 'jsonable']


@dataclass
class ModelResult:
    """One model's scores on the scored part (per-joint lists in joint order) and timings."""

    model: str
    nmse: list[float]
    nmse_mean: float
    mse: list[float]
    train_seconds: float
    predict_seconds: float
    scored_samples: int = 0
    coverage: float = 1.0
    realtime_factor: float | None = None
    details: dict = field(default_factory=dict)


@dataclass
class Series:
    """Arrays for the plots and ``predictions.npz`` (not part of metrics.json).

    ``t``, ``measured`` and ``predictions`` cover the scored samples; ``curves`` maps model ->
    (bin centre times, nMSE mean over joints); ``dual_*`` the dual identifier's choice over the
    whole stream (rows where it published).
    """

    t: np.ndarray
    measured: np.ndarray
    predictions: dict[str, np.ndarray]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    learning_stops_at: float | None = None
    dual_t: np.ndarray | None = None
    dual_active: np.ndarray | None = None
    dual_names: tuple[str, str] = ('lstm', 'gru')


def jsonable(obj: Any) -> Any:
    """Plain JSON types; non-finite floats become None (metrics.json must never hold NaN/Inf)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


@dataclass
class EvalReport:
    """Everything ``invdyn_eval`` reports; :meth:`to_json` is the content of metrics.json."""

    bag: str | None
    topic: str | None
    protocol: str
    train_fraction: float
    joint_names: list[str]
    samples: int
    stream_seconds: float
    wall_seconds: float
    results: list[ModelResult]
    train_samples: int = 0
    test_samples: int = 0
    test_stream_seconds: float = 0.0
    epochs: int | None = None
    gp_samples: int | None = None
    gp_refit_every: int | None = None
    seed: int = 0
    nmse_reference: dict = field(default_factory=dict)
    estimator: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    series: Series | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != 'series'}
        d['results'] = [dataclasses.asdict(r) for r in self.results]
        return jsonable(d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def result(self, model: str) -> ModelResult:
        for r in self.results:
            if r.model == model:
                return r
        raise KeyError(model)

    def table(self) -> str:
        """Per-joint nMSE table (joints as rows, models as columns, mean last) plus timings."""
        names = [r.model for r in self.results]
        width = max([10] + [len(n) + 2 for n in names])
        jw = max([6] + [len(j) for j in self.joint_names])
        head = f'{"joint":<{jw}}' + ''.join(f'{n:>{width}}' for n in names)
        lines = [f'nMSE ({self.protocol}, {self.test_samples} scored samples; '
                 f'standardized with the training part\'s torque mean/std)', head,
                 '-' * len(head)]

        def fmt(v: Any) -> str:
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                return f'{"-":>{width}}'
            return f'{v:>{width}.4f}' if v == 0 or abs(v) >= 1e-3 else f'{v:>{width}.2e}'

        for j, joint in enumerate(self.joint_names):
            lines.append(f'{joint:<{jw}}' + ''.join(fmt(r.nmse[j]) for r in self.results))
        lines.append('-' * len(head))
        lines.append(f'{"mean":<{jw}}' + ''.join(fmt(r.nmse_mean) for r in self.results))
        lines.append(f'{"train s":<{jw}}' + ''.join(f'{r.train_seconds:>{width}.1f}'
                                                    for r in self.results))
        lines.append(f'{"pred s":<{jw}}' + ''.join(f'{r.predict_seconds:>{width}.2f}'
                                                   for r in self.results))
        lines.append(f'{"x realtime":<{jw}}' + ''.join(
            f'{r.realtime_factor:>{width}.0f}' if r.realtime_factor else f'{"-":>{width}}'
            for r in self.results))
        return '\n'.join(lines)

    def parameters_table(self) -> str:
        """The identified parameters (:meth:`invdyn_ros.stages.physics.PhysicsPrior.report`) of
        every model that identified them (``identified``, and the networks' pipelines with a prior),
        as they are at the end of the run: per joint the body's mass, centre of mass and friction;
        '' when no model identified any (``rnea`` alone keeps the URDF's)."""
        blocks = []
        for r in self.results:
            rep = r.details.get('parameters') if r.model != 'rnea' else None
            if rep is None:
                phys = (r.details.get('pipeline') or {}).get('physics') or {}
                rep = phys.get('parameters') if phys.get('identification') else None
            if not isinstance(rep, dict):
                continue
            jw = max([6] + [len(j) for j in self.joint_names])
            lines = [f'identified parameters ({r.model}; max relative change of an inertial '
                     f'parameter against the URDF: {rep.get("max_relative_change", 0.0):.3g}; '
                     f'Coulomb sign tanh(qd / {rep.get("coulomb_velocity", float("nan")):.3g} '
                     'rad/s))',
                     f'{"joint":<{jw}}{"mass kg":>10}{"com x,y,z m":>28}{"viscous":>10}'
                     f'{"coulomb":>10}{"offset":>10}']
            for joint in self.joint_names:
                p = rep.get(joint)
                if not isinstance(p, dict):
                    continue
                com = ','.join(f'{c:.3f}' for c in p['com'])
                lines.append(f'{joint:<{jw}}{p["mass"]:>10.3f}{com:>28}{p["viscous"]:>10.3f}'
                             f'{p["coulomb"]:>10.3f}{p["offset"]:>10.3f}')
            blocks.append('\n'.join(lines))
        return '\n\n'.join(blocks)

