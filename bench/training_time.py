#!/usr/bin/env python3
"""Training time against dataset size, LSTM vs GP, beside Rueckert et al. 2017, Table II.

Rueckert, Nakatenus, Tosatto, Peters (Humanoids 2017), Table II, on an 8-core PC: LSTM 2.9 / 28.1 /
141.1 / 282.4 s for 1k / 10k / 50k / 100k samples; GP 33.7 s at 1k and 3196 s at 10k. The issue's
target: at 100k samples, train to converged accuracy at least 10x faster than 282 s (<= 28.2 s)
on this 2-core machine.

Data (7-DoF rows; the sizes count *training windows*):

- The pool, in this order: KUKA-I (20,068 samples, 100 Hz), Baxter (19,295, 100 Hz), UR10
  (12,349, 125 Hz; 6 joints, padded with a 7th joint whose q, qd, qdd and torque are 0), then the
  simulated UR5 of ``invdyn_ros.sim`` (6 joints, padded the same way): ``SimulatedArm`` (Pinocchio,
  friction on, no sensor noise) tracking ``FourierTrajectory`` references (seeds 0, 1, ..., 60 s
  each, 0.1 Hz base frequency, 5 harmonics, around ``UR_HOME``) with ``PDController`` + the ideal
  feedforward via ``track()`` at 500 Hz, decimated to 100 Hz; the measured torque is the applied
  one. The real sets give ~51.5k windows; the sim fills the rest of 100k (~60k windows). The sim
  data is cached in ``$TMPDIR/invdyn_bench_cache`` (regenerated when absent, ~1 min).
- Every trajectory separately: ``estimation.estimate_offline`` (zero-phase Butterworth, order 2,
  10 Hz, qdd from the filtered velocity) and ``windows.make_windows`` (window 10); the label is
  the filtered torque of the newest row. A window never spans two trajectories.
- A size N takes a prefix of the pool: it is cut into blocks of 100 consecutive windows, every 10th
  block is validation, the others training, until N training windows are collected (validation is
  then ~N/9 windows, at most 5,000 evenly spaced ones are used). Validation blocks are interleaved
  with training ones (same robots, same motions, nearby times): it measures convergence, not
  generalization to new motions.

LSTM (the headline): :class:`invdyn_ros.learning.learner.OnlineLearner`, model ``lstm`` 2 x 64 (the node's
default), window 10, **batch 128** (Rueckert's), Adam with ``--lr`` (default 1e-2, the rate
bench/kuka_core.py chose on a KUKA validation split; the node's default 1e-3 is for online
learning), the learner's plateau decay (patience 200 steps), gradient clipping and divergence guard.
``fit_scalers`` + ``learn_many`` load all N windows into the replay buffer (capacity N, no FIFO part,
``updates_per_sample = 0``), then ``step()`` draws uniform batches of 128 from it. torch threads =
2 (``--threads``).

Time and convergence: *training time* is the wall time of building the learner, fitting its
scalers, loading the buffer (which also scores every window once, as ``learn_many`` does) and the
Adam steps; the validation evaluations between them are excluded (a measurement artefact, stopped
clock). Every ``--eval-every`` steps (100) the validation nMSE (mean over joints, standardized with
the training labels' mean/std) is recorded. Training stops once 30 evaluations in a row (3,000
steps) did not improve the best value by 1 % (and at least 3,000 steps ran), or at ``--max-steps``
(20,000): a long tail, so that the learning-rate decay of the plateau scheduler has had its chance
and the plateau is the real one. The curve is smoothed with a running median
of 3 evaluations (one lucky evaluation must not stop the clock); its minimum is the *plateau* (the
best accuracy this run reached: on the small sizes validation gets worse again as the network
overfits, so "the last value" would reward overfitting); **converged** is the first evaluation whose
smoothed value is within 5 % of the plateau (<= 1.05 x plateau), and time-to-converge is the
training time up to it. Also reported:
seconds per epoch (N / 128 steps), for a like-for-like look at Rueckert's linear scaling.

GP: :class:`invdyn_ros.offline.baselines.GPBaseline` (one exact sklearn GP per joint, Matern 5/2 ARD +
white noise) on the newest row of each window (21 inputs) of the size's training set:

- "project GP": hyperparameters optimized on 300 points, then exact conditioning on all n points
  (what ``invdyn_eval --models gp`` does); measured at 1k, 2k and 5k;
- "full exact GP": hyperparameters optimized on all n points (``opt_samples = n``), as a textbook
  GP and presumably Rueckert's; measured at 1k for ``--gp-full-joints`` joints (default 1) and
  scaled to 7 joints.
- Larger sizes are **extrapolated** and labelled so (nothing runs for hours; an exact GP on 100k
  points would also need an 80 GB kernel matrix): the project GP as its measured optimization time
  (fixed: always 300 points) plus its measured conditioning time at the largest n0 scaled by
  ``(n / n0)^3``; the full exact GP as its 1k time scaled by ``(n / 1000)^3`` (the Cholesky
  factorization per optimizer iteration is O(n^3)).

The machine is shared: the load average is printed next to every timing; run this when it is low.

Usage::

    python bench/training_time.py                         # 1k/10k/50k/100k, LSTM + GP
    python bench/training_time.py --sizes 1000,10000 --no-gp --no-save
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, not an installed copy

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import (Recorder, format_machine, format_table, machine_info,  # noqa: E402
                          require_datasets_dir, save_results)
from invdyn_ros import metrics  # noqa: E402
from invdyn_ros.learning.learner import LearnerConfig, OnlineLearner  # noqa: E402
from invdyn_ros.offline.datasets import Recording, load_baxter, load_kuka, load_ur10  # noqa: E402
from invdyn_ros.stages.estimation import FilterConfig, estimate_offline  # noqa: E402
from invdyn_ros.stages.windows import make_windows  # noqa: E402

#: Rueckert et al. 2017, Table II (seconds, 8-core PC).
RUECKERT_LSTM = {1000: 2.9, 10000: 28.1, 50000: 141.1, 100000: 282.4}
RUECKERT_GP = {1000: 33.7, 10000: 3196.0}
TARGET_100K_S = 282.4 / 10.0
N_JOINTS = 7
WINDOW = 10
CUTOFF_HZ = 10.0
BLOCK = 100
VAL_EVERY_BLOCK = 10
MAX_VAL = 5000
SIM_SEGMENT_S = 60.0


# ================================================================================ data
@dataclass
class Source:
    """Windows (M, L, 3*7) float32 and labels (M, 7) of one robot, trajectories in order."""

    name: str
    windows: np.ndarray
    labels: np.ndarray


def _pad(a: np.ndarray, n: int = N_JOINTS) -> np.ndarray:
    """(N, k) -> (N, n): extra joints are 0 (a joint that never moves and needs no torque)."""
    if a.shape[1] == n:
        return a
    return np.hstack([a, np.zeros((a.shape[0], n - a.shape[1]))])


def windows_of(rec: Recording, window: int = WINDOW, cutoff_hz: float = CUTOFF_HZ) -> Source:
    """Per trajectory: zero-phase estimate, pad to 7 joints, windows + filtered-torque labels."""
    fcfg = FilterConfig(order=2, cutoff_hz=cutoff_hz, rate_hz=rec.rate_hz)
    W, Y = [], []
    segments = rec.segments or ((0, len(rec.t)),)
    for start, stop in segments:
        if stop - start < window + 10:
            continue
        q, qd, qdd, tau = estimate_offline(
            rec.t[start:stop], rec.q[start:stop],
            None if rec.qd is None else rec.qd[start:stop], rec.tau[start:stop], fcfg)
        feats = np.hstack([_pad(q), _pad(qd), _pad(qdd)])
        W.append(make_windows(feats, window).astype(np.float32))
        Y.append(_pad(tau)[window - 1:].astype(np.float32))
    return Source(rec.name, np.concatenate(W), np.concatenate(Y))


def simulate_ur5(n_samples: int, rate_hz: float = 100.0, cache: Path | None = None) -> Recording:
    """``n_samples`` of the simulated UR5 (see the module docstring), as 60 s trajectories."""
    from invdyn_ros.sim.arm import UR_HOME, ArmConfig, SimulatedArm
    from invdyn_ros.sim.controller import PDController, track, ur5_default_gains
    from invdyn_ros.sim.trajectory import FourierTrajectory

    per = int(round(SIM_SEGMENT_S * rate_hz))
    n_seg = max(1, math.ceil(n_samples / per))
    path = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / f'ur5_sim_{n_seg}x{per}_{rate_hz:g}hz.npz'
        if path.is_file():
            d = np.load(path)
            return _sim_recording(d['t'], d['q'], d['qd'], d['tau'], d['seg'], rate_hz)
    ts, qs, qds, taus, seg = [], [], [], [], []
    t0 = 0.0
    for k in range(n_seg):
        arm = SimulatedArm(ArmConfig(seed=k))
        traj = FourierTrajectory(arm.n, seed=k, center=UR_HOME, lower=arm.lower_limits,
                                 upper=arm.upper_limits)
        kp, kd = ur5_default_gains()
        ctrl = PDController(kp, kd, arm.effort_limits)
        out = track(arm, traj, ctrl, SIM_SEGMENT_S, feedforward='ideal')
        step = int(round(1.0 / (rate_hz * arm.config.dt)))
        sl = slice(0, None, step)
        ts.append(out['t'][sl][:per] + t0)
        qs.append(out['q'][sl][:per])
        qds.append(out['qd'][sl][:per])
        taus.append(out['tau'][sl][:per])
        seg.append(len(ts[-1]))
        t0 = float(ts[-1][-1]) + 1.0
        print(f'  simulated UR5 trajectory {k + 1}/{n_seg}', file=sys.stderr, flush=True)
    t, q, qd, tau = (np.concatenate(x) for x in (ts, qs, qds, taus))
    if path is not None:
        np.savez(path, t=t, q=q, qd=qd, tau=tau, seg=np.asarray(seg))
    return _sim_recording(t, q, qd, tau, np.asarray(seg), rate_hz)


def _sim_recording(t, q, qd, tau, seg, rate_hz) -> Recording:
    bounds = np.concatenate([[0], np.cumsum(seg)])
    segments = tuple((int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]))
    return Recording(name='ur5_sim', joint_names=tuple(f'ur5_j{i + 1}' for i in range(q.shape[1])),
                     rate_hz=rate_hz, t=t, q=q, qd=qd, qdd=None, tau=tau, segments=segments,
                     segment_labels=tuple(f'sim{k}' for k in range(len(segments))))


def build_pool(datasets: Path, needed: int, cache: Path) -> list[Source]:
    """Real sources first, then as much simulated UR5 as ``needed`` windows require."""
    pool = [windows_of(load_kuka(datasets)), windows_of(load_baxter(datasets)),
            windows_of(load_ur10(datasets))]
    have = sum(len(s.windows) for s in pool)
    if needed > have:
        # each 60 s trajectory loses WINDOW - 1 rows to the first window
        missing = needed - have
        samples = missing + (WINDOW - 1) * math.ceil(missing / (SIM_SEGMENT_S * 100)) + 100
        pool.append(windows_of(simulate_ur5(samples, cache=cache)))
    return pool


@dataclass
class SizedSet:
    train_W: np.ndarray
    train_Y: np.ndarray
    val_W: np.ndarray
    val_Y: np.ndarray
    sources: dict


def take(pool: list[Source], n_train: int) -> SizedSet:
    """Blocks of BLOCK windows from the pool prefix; every VAL_EVERY_BLOCK-th is validation."""
    W = np.concatenate([s.windows for s in pool])
    Y = np.concatenate([s.labels for s in pool])
    names = np.concatenate([np.full(len(s.windows), i) for i, s in enumerate(pool)])
    block = np.arange(len(W)) // BLOCK
    is_val = (block % VAL_EVERY_BLOCK) == VAL_EVERY_BLOCK - 1
    train_idx = np.flatnonzero(~is_val)
    if len(train_idx) < n_train:
        raise SystemExit(f'the pool has only {len(train_idx)} training windows, {n_train} asked')
    train_idx = train_idx[:n_train]
    val_idx = np.flatnonzero(is_val & (np.arange(len(W)) < train_idx[-1]))
    if len(val_idx) == 0:      # tiny sizes: the block right after the training windows
        val_idx = np.arange(train_idx[-1] + 1, min(train_idx[-1] + 1 + BLOCK, len(W)))
    if len(val_idx) > MAX_VAL:
        val_idx = val_idx[np.linspace(0, len(val_idx) - 1, MAX_VAL).astype(int)]
    used = {pool[i].name: int(np.count_nonzero(names[train_idx] == i)) for i in range(len(pool))}
    return SizedSet(W[train_idx], Y[train_idx], W[val_idx], Y[val_idx],
                    {k: v for k, v in used.items() if v})


# ================================================================================ LSTM
@dataclass(frozen=True)
class LSTMSettings:
    learning_rate: float = 1e-2
    batch_size: int = 128
    hidden_size: int = 64
    num_layers: int = 2
    eval_every: int = 100
    patience: int = 30
    min_improvement: float = 0.01
    min_steps: int = 3000
    max_steps: int = 20000
    converge_tolerance: float = 0.05
    seed: int = 0


def converged_index(values: list[float], tolerance: float) -> tuple[int, float]:
    """(index of the first evaluation within ``tolerance`` of the plateau, the plateau).

    Values are smoothed by a causal running median of 3 (one lucky evaluation does not end the
    clock early); the plateau is the smoothed curve's minimum."""
    v = np.asarray(values, dtype=np.float64)
    smooth = np.array([np.median(v[max(0, i - 2):i + 1]) for i in range(len(v))])
    plateau = float(smooth.min())
    hits = np.flatnonzero(smooth <= (1.0 + tolerance) * plateau)
    return int(hits[0]), plateau


def train_lstm(data: SizedSet, s: LSTMSettings) -> dict[str, Any]:
    n = data.train_Y.shape[1]
    mean = data.train_Y.mean(axis=0).astype(np.float64)
    std = np.maximum(data.train_Y.std(axis=0).astype(np.float64), 1e-6)
    cfg = LearnerConfig(model='lstm', model_options={'hidden_size': s.hidden_size,
                                                     'num_layers': s.num_layers},
                        window=WINDOW, batch_size=s.batch_size,
                        buffer_capacity=len(data.train_W), recent_capacity=0, recent_fraction=0.0,
                        learning_rate=s.learning_rate, updates_per_sample=0.0,
                        min_learning_rate=min(1e-5, s.learning_rate), seed=s.seed)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    learner = OnlineLearner(n, cfg)
    learner.fit_scalers(data.train_W, data.train_Y)
    learner.learn_many(data.train_W, data.train_Y, chunk=4096)
    load_s = time.perf_counter() - t0
    train_s = load_s
    curve: list[tuple[int, float, float]] = []
    best, since = math.inf, 0
    while learner.steps < s.max_steps:
        t1 = time.perf_counter()
        for _ in range(s.eval_every):
            learner.step()
        train_s += time.perf_counter() - t1
        pred = learner.predict_many(data.val_W)
        v = float(np.mean(metrics.nmse(data.val_Y, pred, mean, std)))
        curve.append((learner.steps, train_s, v))
        if v < best * (1.0 - s.min_improvement):
            best, since = v, 0
        else:
            since += 1
        if since >= s.patience and learner.steps >= s.min_steps:
            break
    k, plateau = converged_index([c[2] for c in curve], s.converge_tolerance)
    steps_per_epoch = math.ceil(len(data.train_W) / s.batch_size)
    step_s = (curve[-1][1] - load_s) / max(curve[-1][0], 1)
    return {'n_train': len(data.train_W), 'n_val': len(data.val_W), 'sources': data.sources,
            'load_seconds': load_s, 'converge_seconds': curve[k][1], 'converge_steps': curve[k][0],
            'converge_epochs': curve[k][0] / steps_per_epoch, 'plateau_nmse': plateau,
            'nmse_at_converge': curve[k][2], 'total_seconds': curve[-1][1],
            'total_steps': curve[-1][0], 'seconds_per_step': step_s,
            'seconds_per_epoch': step_s * steps_per_epoch, 'final_lr': learner.lr,
            'rollbacks': learner.rollbacks, 'load_average_start': load0,
            'load_average_end': os.getloadavg()[0], 'curve': curve}


# ================================================================================ GP
def time_gp(X: np.ndarray, Y: np.ndarray, Xv: np.ndarray, Yv: np.ndarray, opt_samples: int,
            seed: int = 0) -> dict[str, Any]:
    from invdyn_ros.offline.baselines import GPBaseline

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    gp = GPBaseline(n_samples=len(X), seed=seed, opt_samples=opt_samples)
    gp.fit(X, Y)
    seconds = time.perf_counter() - t0
    # the O(n^3) part alone: condition on all n points again with the hyperparameters kept
    t1 = time.perf_counter()
    gp.fit(X, Y, optimize=False)
    condition = time.perf_counter() - t1
    res = {'n': len(X), 'joints': Y.shape[1], 'opt_samples': min(opt_samples, len(X)),
           'seconds': seconds, 'condition_seconds': condition, 'load_average_start': load0,
           'load_average_end': os.getloadavg()[0]}
    if Yv is not None:
        mean, std = Y.mean(axis=0), np.maximum(Y.std(axis=0), 1e-6)
        res['val_nmse'] = float(np.mean(metrics.nmse(Yv, gp.predict(Xv), mean, std)))
    return res


# ================================================================================ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', default='1000,10000,50000,100000')
    p.add_argument('--gp-sizes', default='1000,2000,5000',
                   help='sizes at which the project GP is fitted (default %(default)s)')
    p.add_argument('--gp-full-joints', type=int, default=1,
                   help='joints timed for the full exact GP at 1k (the rest scaled; 0 skips)')
    p.add_argument('--no-gp', action='store_true')
    p.add_argument('--lr', type=float, default=LSTMSettings.learning_rate)
    p.add_argument('--batch-size', type=int, default=LSTMSettings.batch_size)
    p.add_argument('--eval-every', type=int, default=LSTMSettings.eval_every)
    p.add_argument('--max-steps', type=int, default=LSTMSettings.max_steps)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=2, help='torch threads (default 2)')
    p.add_argument('--datasets', metavar='DIR', help='shared datasets folder (default: auto)')
    p.add_argument('--cache', default=str(Path(tempfile.gettempdir()) / 'invdyn_bench_cache'),
                   help='where the simulated UR5 data is cached (default %(default)s)')
    p.add_argument('--no-save', action='store_true')
    p.add_argument('--tag', default='', help='suffix of the results file names')
    args = p.parse_args(argv)
    try:
        args.size_list = [int(x) for x in args.sizes.split(',') if x.strip()]
        args.gp_size_list = [int(x) for x in args.gp_sizes.split(',') if x.strip()]
    except ValueError:
        p.error('--sizes / --gp-sizes: comma lists of integers')
    if not args.size_list or min(args.size_list) < 2 * BLOCK:
        p.error(f'--sizes must be >= {2 * BLOCK}')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Recorder()
    info = machine_info()
    out('Training time vs dataset size (Rueckert et al. 2017, Table II)')
    out(format_machine(info))
    out('command: python bench/training_time.py ' + ' '.join(argv if argv is not None
                                                             else sys.argv[1:]))
    datasets = require_datasets_dir(args.datasets)
    needed = math.ceil(max(args.size_list) * VAL_EVERY_BLOCK / (VAL_EVERY_BLOCK - 1)) + BLOCK
    t0 = time.perf_counter()
    pool = build_pool(datasets, needed, Path(args.cache))
    out(f'pool: ' + ', '.join(f'{s.name} {len(s.windows)}' for s in pool)
        + f' windows (window {WINDOW}, 7 joints, 6-joint robots padded); prepared in '
          f'{time.perf_counter() - t0:.0f} s (not counted)')
    settings = LSTMSettings(learning_rate=args.lr, batch_size=args.batch_size,
                            eval_every=args.eval_every, max_steps=args.max_steps, seed=args.seed)
    out(f'LSTM: OnlineLearner lstm {settings.num_layers}x{settings.hidden_size}, batch '
        f'{settings.batch_size}, lr {settings.learning_rate:g}, {args.threads} torch threads; '
        f'converged = running median of 3 validation nMSE <= 1.05 x its minimum')
    lstm: dict[int, dict[str, Any]] = {}
    for n in args.size_list:
        data = take(pool, n)
        r = train_lstm(data, settings)
        lstm[n] = r
        out(f'  {n:>6} windows ({", ".join(f"{k} {v}" for k, v in r["sources"].items())}): '
            f'converged in {r["converge_seconds"]:.1f} s ({r["converge_steps"]} steps, '
            f'{r["converge_epochs"]:.1f} epochs), val nMSE {r["nmse_at_converge"]:.4f} '
            f'(plateau {r["plateau_nmse"]:.4f}); ran {r["total_steps"]} steps / '
            f'{r["total_seconds"]:.1f} s; {1000 * r["seconds_per_step"]:.1f} ms/step; load '
            f'{r["load_average_start"]:.2f} -> {r["load_average_end"]:.2f}')

    gp: dict[str, Any] = {'project': {}, 'full': None}
    if not args.no_gp:
        for n in args.gp_size_list:
            data = take(pool, n)
            X, Xv = data.train_W[:, -1, :].astype(np.float64), data.val_W[:, -1, :].astype(np.float64)
            r = time_gp(X, data.train_Y.astype(np.float64), Xv, data.val_Y.astype(np.float64),
                        opt_samples=300, seed=args.seed)
            gp['project'][n] = r
            out(f'  project GP n={n}: {r["seconds"]:.1f} s (7 joints; of which conditioning on all '
                f'n points {r["condition_seconds"]:.1f} s), val nMSE {r["val_nmse"]:.4f}; '
                f'load {r["load_average_start"]:.2f} -> {r["load_average_end"]:.2f}')
        if args.gp_full_joints > 0:
            data = take(pool, 1000)
            X = data.train_W[:, -1, :].astype(np.float64)
            J = min(args.gp_full_joints, N_JOINTS)
            r = time_gp(X, data.train_Y[:, :J].astype(np.float64), None, None,
                        opt_samples=1000, seed=args.seed)
            r['seconds_7_joints_estimated'] = r['seconds'] * N_JOINTS / J
            gp['full'] = r
            out(f'  full exact GP n=1000: {r["seconds"]:.1f} s for {J} joint(s) -> '
                f'{r["seconds_7_joints_estimated"]:.0f} s for 7 (scaled); load '
                f'{r["load_average_start"]:.2f} -> {r["load_average_end"]:.2f}')

    # ------------------------------------------------------------------ the table
    def gp_project_at(n: int) -> tuple[str | None, str | None]:
        if n in gp['project']:
            r = gp['project'][n]
            return f'{r["seconds"]:.1f}', f'{r["val_nmse"]:.4f}'
        if not gp['project']:
            return None, None
        n0 = max(gp['project'])
        if n < n0:
            return None, None
        r0 = gp['project'][n0]
        fixed = max(r0['seconds'] - r0['condition_seconds'], 0.0)   # the 300-point optimization
        return f'~{fixed + r0["condition_seconds"] * (n / n0) ** 3:.3g} (extrap.)', None

    def gp_full_at(n: int) -> str | None:
        if gp['full'] is None:
            return None
        t1k = gp['full']['seconds_7_joints_estimated']
        joints = gp['full']['joints']
        if n == 1000:
            return f'{t1k:.0f}' + (f' ({joints} joint x{N_JOINTS // joints})' if joints < N_JOINTS
                                   else '')
        return f'~{t1k * (n / 1000) ** 3:.2g} (extrap.)'

    rows = []
    for n in args.size_list:
        r = lstm[n]
        gpp, gpv = gp_project_at(n)
        rows.append([n, f'{r["converge_seconds"]:.1f}', f'{r["converge_epochs"]:.1f}',
                     f'{r["plateau_nmse"]:.4f}', f'{r["seconds_per_epoch"]:.2f}',
                     f'{RUECKERT_LSTM[n]:g}' if n in RUECKERT_LSTM else None, gpp, gpv,
                     gp_full_at(n), f'{RUECKERT_GP[n]:g}' if n in RUECKERT_GP else None])
    header = ['samples', 'LSTM s to converge', 'epochs', 'val nMSE', 's/epoch', 'Rueckert LSTM s',
              'project GP s', 'GP val nMSE', 'full exact GP s', 'Rueckert GP s']
    out()
    out(format_table(header, rows))
    if 100000 in lstm:
        t = lstm[100000]['converge_seconds']
        out(f'target at 100k: <= {TARGET_100K_S:.1f} s (10x faster than Rueckert\'s 282.4 s): '
            f'{t:.1f} s -> {"MET" if t <= TARGET_100K_S else "NOT MET"} '
            f'({282.4 / t:.1f}x faster)')
    out(f'load average now {machine_info()["load_average_1_5_15min"]}')
    if not args.no_save:
        data = {'machine': info, 'argv': argv if argv is not None else sys.argv[1:],
                'settings': asdict(settings), 'threads': args.threads, 'window': WINDOW,
                'cutoff_hz': CUTOFF_HZ, 'pool': {s.name: len(s.windows) for s in pool},
                'rueckert_lstm': RUECKERT_LSTM, 'rueckert_gp': RUECKERT_GP, 'lstm': lstm, 'gp': gp}
        for p in save_results('training_time' + (f'_{args.tag}' if args.tag else ''), out.text,
                              data):
            print(f'wrote {p}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
