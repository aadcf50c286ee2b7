"""invdyn_eval: how well would invdyn_ros have learned this robot? Replay a bag offline, score it.

    invdyn_eval BAG [--topic /joint_states] [--joints a,b,c] [--protocol split|prequential]
                [--train-fraction 0.8] [--models naive,lstm,dual] [--config node_params.yaml]
                [--output DIR] [--seed 0] [--epochs N] [--gp-samples 1000]
                [--gp-refit-every 500] [--progress] [--no-plots]

BAG is a rosbag2 bag (sqlite3 or MCAP; a bag folder or a single .db3/.mcap file) recorded with
``ros2 bag record /joint_states`` on the robot. The samples go, in stamp order and much faster than
real time, through the node's own pipeline (see :mod:`invdyn_ros.offline.evaluation`). Writes into
DIR:

- ``metrics.json``: per-model, per-joint nMSE and MSE, timings, and the evaluation settings
  (``wall_seconds``: reading the bag plus the whole evaluation);
- ``predictions.npz``: the scored samples' times, measured (filtered) torques, every model's
  predictions and the nMSE reference mean/std, for your own analysis;
- ``torques.png``, ``errors.png``, ``learning_curve.png`` and (with the dual model)
  ``dual_selection.png`` (see :mod:`invdyn_ros.offline.plots`).

Prints a per-joint nMSE table on stdout; a progress bar on stderr when it is a terminal (or with
``--progress``). Exit status: 0 on success; 2 on a user error (missing or corrupt bag, topic not in
the bag, unknown model, bad option or config file), reported in one line on stderr without a
traceback. Pure Python: needs no ROS installation.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from invdyn_ros.atomic import atomic_write_text

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130
DEFAULT_MODELS = 'naive,lstm,dual'


def _csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(',') if x.strip()]


def _csv_floats(text: str) -> list[float]:
    try:
        return [float(x) for x in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected comma-separated numbers, got {text!r}') \
            from None


def build_parser() -> argparse.ArgumentParser:
    from invdyn_ros.offline.evaluation import (DEFAULT_EPOCHS, DEFAULT_GP_REFIT_EVERY,
                                               DEFAULT_GP_SAMPLES, MODELS, PROTOCOLS)

    p = argparse.ArgumentParser(
        prog='invdyn_eval',
        description='Replay a rosbag2 bag of sensor_msgs/JointState through the invdyn_ros '
                    'pipeline offline and report how well each model learns the robot.',
        epilog='nMSE: per-joint MSE of torques standardized with the training part\'s torque '
               'mean/std (1.0 = predicting the training mean, 0.0 = perfect).')
    p.add_argument('bag', help='rosbag2 bag folder, or a single .db3 / .mcap file')
    p.add_argument('--topic', default='/joint_states',
                   help='JointState topic (default %(default)s)')
    p.add_argument('--joints', type=_csv_list, default=None,
                   help='comma-separated joint names and their order (default: the config\'s '
                        'joint_names, else all joints of the first message); messages may list '
                        'more joints, in any order')
    p.add_argument('--protocol', choices=PROTOCOLS, default='split',
                   help='split: learn on the first --train-fraction, then test with learning off; '
                        'prequential: predict each sample before learning it, like the live node '
                        '(default %(default)s)')
    p.add_argument('--train-fraction', type=float, default=0.8,
                   help='training part of the stream (split), and the part whose torque '
                        'mean/std standardize nMSE (both protocols); default %(default)s')
    p.add_argument('--models', default=DEFAULT_MODELS,
                   help=f'comma list from {",".join(MODELS)} (default %(default)s)')
    p.add_argument('--config', default=None,
                   help='node parameter YAML (ros2 param file or a flat mapping) for the pipeline')
    p.add_argument('--output', '-o', default=None,
                   help='output directory (default: ./<bag name>_eval)')
    p.add_argument('--seed', type=int, default=None,
                   help='seed of the learners and the GP subsample (default: the config\'s '
                        'seed parameter, else 0)')
    p.add_argument('--epochs', type=int, default=DEFAULT_EPOCHS,
                   help='split: extra passes over each learner\'s replay buffer after the '
                        'training stream (default %(default)s)')
    p.add_argument('--gp-samples', type=int, default=DEFAULT_GP_SAMPLES,
                   help='training points of the GP baseline (exact GP is O(m^3)); default '
                        '%(default)s')
    p.add_argument('--gp-refit-every', type=int, default=DEFAULT_GP_REFIT_EVERY,
                   help='prequential: refit the GP every N samples (default %(default)s)')
    p.add_argument('--urdf', default=None,
                   help='the robot\'s URDF file: enables the models rnea, identified and '
                        'residual_<network>, and makes dual the physics + residual network beside '
                        'the black-box one (sets the parameters urdf_path and prior: rnea)')
    p.add_argument('--payload-mass', type=float, default=None,
                   help='kg at the last joint (the parameter payload_mass_kg)')
    p.add_argument('--payload-com', type=_csv_floats, default=None,
                   help='x,y,z of the payload\'s centre of mass in the last joint\'s frame (m)')
    p.add_argument('--progress', action='store_true',
                   help='show the progress bar even when stderr is not a terminal')
    p.add_argument('--no-plots', action='store_true', help='skip the PNG plots')
    return p


# ---------------------------------------------------------------------------- config files
def load_params(path: str | os.PathLike) -> dict[str, Any]:
    """Node parameters from a YAML file, as a flat dict.

    Accepts a ros2 parameter file (``<node>: {ros__parameters: {...}}``; ``/**`` wildcard entries
    first, then the ``invdyn_node`` entry or the only node), a bare ``ros__parameters`` mapping, or
    a flat mapping. Nested mappings are flattened with ``.`` as ROS does. Raises ConfigError.
    """
    import yaml

    from invdyn_ros.errors import ConfigError

    try:
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f)
    except OSError as err:
        raise ConfigError(f'--config: cannot read {path}: {err.strerror or err}') from None
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f'--config: {path} is not valid YAML ({first})') from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f'--config: {path} must hold a mapping of parameters, '
                          f'got {type(data).__name__}')
    if 'ros__parameters' in data:
        data = data['ros__parameters']
    else:
        nodes = {k: v for k, v in data.items()
                 if isinstance(v, dict) and 'ros__parameters' in v}
        if nodes:
            merged: dict[str, Any] = {}
            order = [k for k in nodes if k in ('/**', '**')]
            specific = [k for k in nodes if str(k).strip('/').split('/')[-1] == 'invdyn_node']
            if not specific and len(nodes) - len(order) == 1:
                specific = [k for k in nodes if k not in order]
            if not order and not specific:
                raise ConfigError(f'--config: {path} has parameters for nodes {sorted(nodes)}; '
                                  f'expected invdyn_node or /**')
            for key in order + specific:
                merged.update(nodes[key]['ros__parameters'] or {})
            data = merged
    if not isinstance(data, dict):
        raise ConfigError(f'--config: ros__parameters in {path} must be a mapping')

    flat: dict[str, Any] = {}

    def walk(prefix: str, d: dict) -> None:
        for k, v in d.items():
            key = f'{prefix}{k}'
            if isinstance(v, dict):
                walk(key + '.', v)
            else:
                flat[key] = v

    walk('', data)
    return flat


# ---------------------------------------------------------------------------- outputs
def write_outputs(report: Any, out_dir: Path, plots: bool = True) -> list[Path]:
    """metrics.json, predictions.npz and the plots; returns the written paths."""
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    metrics_path = out_dir / 'metrics.json'
    atomic_write_text(metrics_path, report.to_json() + '\n')
    written.append(metrics_path)
    series = report.series
    if series is not None:
        arrays = {'t': series.t, 'measured': series.measured,
                  'train_mean': np.asarray(report.nmse_reference['mean']),
                  'train_std': np.asarray(report.nmse_reference['std']),
                  'joint_names': np.asarray(report.joint_names)}
        for name, pred in series.predictions.items():
            arrays[f'pred_{name}'] = pred
        npz_path = out_dir / 'predictions.npz'
        np.savez_compressed(npz_path, **arrays)
        written.append(npz_path)
        if plots:
            from invdyn_ros.offline import plots as plotmod

            written += [Path(p) for p in plotmod.write_all(out_dir, report).values()]
    return written


# ---------------------------------------------------------------------------- progress
class _Progress:
    """One tqdm bar on stderr, re-labelled per stage (``evaluate``'s ``progress`` callback)."""

    def __init__(self, enabled: bool | None) -> None:
        from tqdm import tqdm

        # disable=None: tqdm turns itself off when stderr is not a TTY
        self.bar = tqdm(total=1, file=sys.stderr, disable=None if not enabled else False,
                        dynamic_ncols=True, leave=False, unit='smp')
        self.label: str | None = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if label != self.label:
            self.label = label
            self.bar.set_description(label, refresh=False)
            self.bar.reset(total=max(int(total), 1))
        self.bar.update(max(0, int(done) - self.bar.n))

    def close(self) -> None:
        self.bar.close()


# ---------------------------------------------------------------------------- main
def apply_physics_options(params: dict[str, Any], args: argparse.Namespace) -> None:
    """--urdf / --payload-mass / --payload-com into the node parameters they stand for; a model
    that needs the URDF without one is a ConfigError."""
    from invdyn_ros.errors import ConfigError
    from invdyn_ros.offline.evaluation import PHYSICS_MODELS, RESIDUAL_MODELS, parse_models

    if args.urdf:
        params['urdf_path'] = args.urdf
        params.pop('robot_description', None)
        if params.get('prior', 'none') == 'none':
            params['prior'] = 'rnea'
    if args.payload_mass is not None:
        params['payload_mass_kg'] = args.payload_mass
    if args.payload_com is not None:
        params['payload_com'] = args.payload_com
    needs = [m for m in parse_models(args.models) if m in PHYSICS_MODELS + RESIDUAL_MODELS]
    if needs and not (params.get('urdf_path') or params.get('robot_description')):
        raise ConfigError(f'models {needs} need the robot model: give --urdf FILE (or urdf_path '
                          'in --config)')


def run(args: argparse.Namespace) -> int:
    import time

    from invdyn_ros.errors import ConfigError
    from invdyn_ros.offline.bag import read_recording
    from invdyn_ros.offline.evaluation import evaluate, parse_models

    t_start = time.perf_counter()
    models = parse_models(args.models)          # unknown model: ConfigError before any work
    params = load_params(args.config) if args.config else {}
    # joint order: --joints, else the config's joint_names (what the node would use), else the
    # names of the bag's first message
    joints = args.joints or params.get('joint_names') or None
    if joints is not None and (isinstance(joints, str) or not all(isinstance(j, str)
                                                                  for j in joints)):
        raise ConfigError(f'joint_names: expected a list of strings, got {joints!r}')
    rec = read_recording(args.bag, topic=args.topic, joints=joints)
    if args.joints:
        params['joint_names'] = list(args.joints)
    apply_physics_options(params, args)
    out_dir = Path(args.output) if args.output else Path.cwd() / f'{Path(args.bag).name}_eval'
    progress = _Progress(args.progress or None)
    try:
        report = evaluate(rec, models, protocol=args.protocol,
                          train_fraction=args.train_fraction, params=params, seed=args.seed,
                          progress=progress, epochs=args.epochs, gp_samples=args.gp_samples,
                          gp_refit_every=args.gp_refit_every, bag=str(args.bag),
                          topic=args.topic)
    finally:
        progress.close()
    report.wall_seconds = time.perf_counter() - t_start   # reading the bag included
    written = write_outputs(report, out_dir, plots=not args.no_plots)
    skipped = {k: v for k, v in dict(rec.meta.get('skipped', {}) or {}).items() if v}
    print(f'{args.bag}: {report.samples} samples on {args.topic} '
          f'({len(report.joint_names)} joints, {report.stream_seconds:.1f} s of stream'
          + (f', skipped messages: {skipped}' if skipped else '')
          + (', velocities from positions' if rec.qd is None else '') + ')')
    print(report.table())
    parameters = report.parameters_table()
    if parameters:
        print(parameters)
    print(f'wrote {", ".join(str(p) for p in written)} ({report.wall_seconds:.1f} s)')
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    from invdyn_ros.errors import InvdynError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed usage and the error (or --help)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return run(args)
    except InvdynError as err:   # BagError, DatasetError, ConfigError, CheckpointError
        print(f'invdyn_eval: error: {err}', file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:       # output directory not writable, disk full, ...
        print(f'invdyn_eval: error: {err}', file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print('invdyn_eval: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == '__main__':
    sys.exit(main())
