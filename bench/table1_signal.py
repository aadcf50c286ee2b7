#!/usr/bin/env python3
"""Rueckert et al. 2017, Table I in spirit: one-step-ahead prediction of a noisy 1-D signal.

Rueckert, Nakatenus, Tosatto, Peters, "Learning inverse dynamics models in O(n) time with LSTM
networks" (Humanoids 2017), Table I compares a naive predictor, a GP and an LSTM on a synthetic
signal of sine, triangle and sawtooth pieces with Gaussian noise (sigma 0.01 / 0.1):
naive 0.264 / 0.310, GP 0.030 / 0.086, LSTM 0.010 / 0.075. The paper does not give the signal's
exact construction, so this script defines its own (below) and its numbers are comparable with the
paper's only in their ranking and trend, not in absolute value.

The signal (:func:`make_signal`, seeded; every property below is tested in
test/test_bench_signal.py):

- Sampled at ``rate_hz = 100`` Hz (the unit of time is irrelevant to the predictors; it only names
  the periods). ``blocks = 16`` blocks of three *segments*, one of each kind (sine, triangle,
  sawtooth) in a random order per block, so every part of the signal holds every kind: 48 segments.
- A segment has a random period ``P`` of 8..12 samples (uniform integer; coarse sampling, so the
  curvature within one step is large and the current value plus velocity is a poor guess, as in the
  paper's naive row) and a random amplitude ``A`` in [0.5, 1.0], and lasts a whole number of
  periods, ``max(1, round(100 / P))`` (about 100 samples, 8-12 periods). Every kind starts at value
  0 and rising, so with whole periods the signal is
  continuous (value 0) at every segment boundary; only its slope changes there:
  sine ``A sin(2 pi k / P)``; triangle ``A * scipy.signal.sawtooth(2 pi k / P + pi / 2, 0.5)``
  (peaks +A at P/4, -A at 3P/4); sawtooth ``A * scipy.signal.sawtooth(2 pi k / P + pi, 1)``
  (rises from 0 to +A at P/2, drops to -A, rises back to 0: one jump of 2A per period).
- Observation: ``noisy = clean + noise_std * N(0, 1)``, i.i.d. (seeded).
- Split: the first ``train_blocks = 12`` blocks (75 %, about 3,600 samples) train, the last 4
  blocks (about 1,200 samples) test: each kind 4 times, with amplitudes never seen in training.

The task: at each step t predict ``x[t+1]`` from the noisy past ``x[..t]``.

- ``naive``: ``x[t] + (x[t] - x[t-1])`` (current value plus current velocity), no training.
- ``gp``: :class:`invdyn_ros.offline.baselines.GPBaseline` (the project's GP: Matern 5/2 ARD + white
  noise; hyperparameters optimized on 200 points with at most 100 L-BFGS iterations, then
  conditioned on 1,000 random training points: the GP is the costly part of this script) on
  the last ``window = 25`` noisy values (more than two of the longest periods, so the last two
  sawtooth jumps, which tell when the next one comes, are always in view).
- ``lstm``: :class:`invdyn_ros.learning.learner.OnlineLearner` (model 'lstm', 1 layer of 64 units, batch
  128, Adam lr 3e-3 with its plateau decay, ``epochs = 40`` passes over the training windows drawn
  from its replay buffer) on windows of the last 25 steps. The learner is built for robots, so a
  step's features are ``[x, dx, ddx]`` = the value and its first and second backward differences
  (the analogue of ``[q, qd, qdd]``; a fixed linear map of the same 25 noisy values the GP sees,
  plus the two before them).
- GP and LSTM learn from noisy targets ``x[t+1]`` of the training part (what a real system has).

Error metric: RMSE over the test part (targets from the start of the test part + ``window`` to the
end) of the prediction against the **noise-free** next value ``clean[t+1]`` (column "vs clean").
Why: against the noisy target every predictor has an error floor of ``noise_std`` (0.1 at the high
noise level, larger than the differences being compared), while the noise-free target measures
what matters for control: how well the predictor recovers the signal through the noise. The RMSE
against the noisy target is reported too ("vs noisy"); which one Rueckert et al. used is not stated
in the paper. Each configuration runs for ``seeds = 20`` seeds (a new signal, noise and model
initialization each): mean +- std over seeds.

Usage::

    python bench/table1_signal.py                        # 20 seeds, both noise levels, all models
    python bench/table1_signal.py --seeds 3 --models naive,gp --no-save
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, not an installed copy

import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402

from bench.common import (Recorder, format_machine, format_table, machine_info,  # noqa: E402
                          save_results)

#: Rueckert et al. 2017, Table I (prediction error, noise sigma 0.01 / 0.1).
RUECKERT_TABLE1 = {'naive': (0.264, 0.310), 'gp': (0.030, 0.086), 'lstm': (0.010, 0.075)}
SEGMENT_KINDS: tuple[str, ...] = ('sine', 'triangle', 'sawtooth')
MODELS: tuple[str, ...] = ('naive', 'gp', 'lstm')
NOISE_LEVELS: tuple[float, ...] = (0.01, 0.1)


# ============================================================================== the signal
@dataclass(frozen=True)
class SignalConfig:
    """How the signal is made; see the module docstring. Lengths are in samples."""

    rate_hz: float = 100.0
    blocks: int = 16
    train_blocks: int = 12
    min_period: int = 8
    max_period: int = 12
    segment_target: int = 100
    min_amplitude: float = 0.5
    max_amplitude: float = 1.0


@dataclass(frozen=True)
class Segment:
    """One piece of the signal: rows ``[start, stop)``, its kind, period (samples), amplitude."""

    start: int
    stop: int
    kind: str
    period: int
    amplitude: float


@dataclass(frozen=True)
class Signal:
    """``t`` (N,) s; ``clean`` / ``noisy`` (N,); ``segments``; rows ``[0, split)`` train."""

    t: np.ndarray
    clean: np.ndarray
    noisy: np.ndarray
    segments: tuple[Segment, ...]
    split: int
    noise_std: float
    seed: int


def waveform(kind: str, n_samples: int, period: int, amplitude: float) -> np.ndarray:
    """``n_samples`` of one kind, value 0 and rising at k = 0, period ``period`` samples."""
    phase = 2.0 * np.pi * np.arange(n_samples) / period
    if kind == 'sine':
        y = np.sin(phase)
    elif kind == 'triangle':
        y = scipy.signal.sawtooth(phase + np.pi / 2.0, width=0.5)
    elif kind == 'sawtooth':
        y = scipy.signal.sawtooth(phase + np.pi, width=1.0)
    else:
        raise ValueError(f'unknown segment kind {kind!r}; expected one of {SEGMENT_KINDS}')
    return amplitude * y


def make_signal(seed: int, noise_std: float, config: SignalConfig = SignalConfig()) -> Signal:
    """The seeded signal of the module docstring (same seed and config -> identical arrays)."""
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f'noise_std must be finite and >= 0, got {noise_std}')
    if not 0 < config.train_blocks < config.blocks:
        raise ValueError('need 0 < train_blocks < blocks')
    rng = np.random.default_rng(seed)
    pieces, segments = [], []
    start, split = 0, 0
    for b in range(config.blocks):
        if b == config.train_blocks:
            split = start
        for kind_index in rng.permutation(len(SEGMENT_KINDS)):
            kind = SEGMENT_KINDS[int(kind_index)]
            period = int(rng.integers(config.min_period, config.max_period + 1))
            amplitude = float(rng.uniform(config.min_amplitude, config.max_amplitude))
            n_periods = max(1, int(round(config.segment_target / period)))
            y = waveform(kind, n_periods * period, period, amplitude)
            pieces.append(y)
            segments.append(Segment(start, start + len(y), kind, period, amplitude))
            start += len(y)
    clean = np.concatenate(pieces)
    noisy = clean + noise_std * rng.standard_normal(clean.shape)
    t = np.arange(len(clean)) / config.rate_hz
    return Signal(t, clean, noisy, tuple(segments), split, float(noise_std), int(seed))


# ============================================================================== predictors
def naive_predict(x: np.ndarray) -> np.ndarray:
    """``p[t] = x[t] + (x[t] - x[t-1])``, the prediction of ``x[t+1]``; ``p[0] = x[0]``."""
    x = np.asarray(x, dtype=np.float64)
    p = x.copy()
    p[1:] = 2.0 * x[1:] - x[:-1]
    return p


def lag_matrix(x: np.ndarray, window: int) -> np.ndarray:
    """Row t (for t >= window - 1) holds ``x[t-window+1 .. t]`` oldest first; earlier rows NaN."""
    out = np.full((len(x), window), np.nan)
    view = np.lib.stride_tricks.sliding_window_view(x, window)
    out[window - 1:] = view
    return out


def difference_features(x: np.ndarray) -> np.ndarray:
    """Per step ``[x, dx, ddx]`` (backward differences; the first rows repeat the first value)."""
    x = np.asarray(x, dtype=np.float64)
    dx = np.diff(x, prepend=x[0])
    ddx = np.diff(dx, prepend=dx[0])
    return np.stack([x, dx, ddx], axis=1)


@dataclass(frozen=True)
class RunSettings:
    window: int = 25
    epochs: int = 40
    hidden_size: int = 64
    num_layers: int = 1
    learning_rate: float = 3e-3
    batch_size: int = 128
    gp_samples: int = 1000
    gp_opt_samples: int = 200
    gp_max_iter: int = 100


def _scored_rows(sig: Signal, window: int) -> np.ndarray:
    """Steps t whose target t+1 is scored: from split + window to N - 2."""
    return np.arange(sig.split + window, len(sig.clean) - 1)


def run_gp(sig: Signal, s: RunSettings, seed: int) -> tuple[np.ndarray, float]:
    from invdyn_ros.offline.baselines import GPBaseline

    X = lag_matrix(sig.noisy, s.window)
    train_t = np.arange(s.window + 2, sig.split - 1)   # target t+1 inside the training part
    t0 = time.perf_counter()
    gp = GPBaseline(n_samples=s.gp_samples, seed=seed, opt_samples=s.gp_opt_samples,
                    max_iter=s.gp_max_iter)
    gp.fit(X[train_t], sig.noisy[train_t + 1][:, None])
    seconds = time.perf_counter() - t0
    rows = _scored_rows(sig, s.window)
    return gp.predict(X[rows])[:, 0], seconds


def run_lstm(sig: Signal, s: RunSettings, seed: int) -> tuple[np.ndarray, float]:
    from invdyn_ros.learning.learner import LearnerConfig, OnlineLearner
    from invdyn_ros.stages.windows import make_windows

    feats = difference_features(sig.noisy)
    W = make_windows(feats, s.window)            # window i ends at row i + window - 1
    end = np.arange(len(W)) + s.window - 1        # the step t of each window
    train = (end >= s.window + 1) & (end + 1 < sig.split)
    cfg = LearnerConfig(model='lstm', model_options={'hidden_size': s.hidden_size,
                                                     'num_layers': s.num_layers},
                        window=s.window, batch_size=s.batch_size,
                        buffer_capacity=int(train.sum()), recent_capacity=0, recent_fraction=0.0,
                        learning_rate=s.learning_rate, updates_per_sample=0.0,
                        min_learning_rate=1e-5, seed=seed)
    t0 = time.perf_counter()
    learner = OnlineLearner(1, cfg)
    targets = sig.noisy[end[train] + 1][:, None]
    learner.fit_scalers(W[train], targets)
    learner.learn_many(W[train], targets, chunk=1024)
    steps = s.epochs * math.ceil(int(train.sum()) / s.batch_size)
    for _ in range(steps):
        learner.step()
    seconds = time.perf_counter() - t0
    rows = _scored_rows(sig, s.window)
    return learner.predict_many(W[rows - (s.window - 1)])[:, 0], seconds


def evaluate_seed(seed: int, noise_std: float, models: list[str], s: RunSettings,
                  config: SignalConfig = SignalConfig()) -> dict[str, dict[str, float]]:
    """RMSE of each model's one-step prediction vs the clean and the noisy next value."""
    sig = make_signal(seed, noise_std, config)
    rows = _scored_rows(sig, s.window)
    out: dict[str, dict[str, float]] = {}
    for m in models:
        if m == 'naive':
            t0 = time.perf_counter()
            pred = naive_predict(sig.noisy)[rows]
            sec = time.perf_counter() - t0
        elif m == 'gp':
            pred, sec = run_gp(sig, s, seed)
        elif m == 'lstm':
            pred, sec = run_lstm(sig, s, seed)
        else:
            raise ValueError(f'unknown model {m!r}')
        if not np.isfinite(pred).all():
            raise RuntimeError(f'{m}: non-finite predictions (seed {seed}, noise {noise_std})')
        out[m] = {'rmse_clean': float(np.sqrt(np.mean((pred - sig.clean[rows + 1]) ** 2))),
                  'rmse_noisy': float(np.sqrt(np.mean((pred - sig.noisy[rows + 1]) ** 2))),
                  'seconds': sec}
    return out


# ============================================================================== main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seeds', type=int, default=20, help='seeds 0..N-1 (default %(default)s)')
    p.add_argument('--noise', default=','.join(str(v) for v in NOISE_LEVELS),
                   help='comma list of noise stds (default %(default)s)')
    p.add_argument('--models', default=','.join(MODELS), help='comma list of naive,gp,lstm')
    p.add_argument('--epochs', type=int, default=RunSettings.epochs)
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    p.add_argument('--no-save', action='store_true', help='do not write bench/results/')
    args = p.parse_args(argv)
    args.model_list = [m.strip() for m in args.models.split(',') if m.strip()]
    bad = [m for m in args.model_list if m not in MODELS]
    if bad or not args.model_list:
        p.error(f'unknown model(s) {bad}; choose from {MODELS}')
    try:
        args.noise_list = [float(v) for v in args.noise.split(',') if v.strip()]
    except ValueError:
        p.error('--noise must be a comma list of numbers')
    if args.seeds < 1 or args.epochs < 0 or args.threads < 1:
        p.error('--seeds and --threads must be >= 1, --epochs >= 0')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Recorder()
    info = machine_info()
    settings = RunSettings(epochs=args.epochs)
    config = SignalConfig()
    out("Rueckert et al. 2017 Table I in spirit: one-step-ahead prediction of a noisy 1-D signal")
    out(format_machine(info))
    out('command: python bench/table1_signal.py ' + ' '.join(argv if argv is not None
                                                             else sys.argv[1:]))
    sig0 = make_signal(0, 0.0, config)
    out(f'signal: {config.blocks} blocks x (sine, triangle, sawtooth) in random order, period '
        f'{config.min_period}-{config.max_period} samples, amplitude {config.min_amplitude}-'
        f'{config.max_amplitude}, ~{config.segment_target} samples per segment, '
        f'{config.rate_hz:g} Hz; seed 0: {len(sig0.clean)} samples, train {sig0.split} / test '
        f'{len(sig0.clean) - sig0.split}')
    out(f'models: naive x[t]+(x[t]-x[t-1]); gp GPBaseline on the last {settings.window} values '
        f'({settings.gp_samples} points); lstm OnlineLearner 1x{settings.hidden_size}, window '
        f'{settings.window}, batch {settings.batch_size}, lr {settings.learning_rate:g}, '
        f'{settings.epochs} epochs')
    out(f'error: RMSE of the prediction of x[t+1] vs the noise-free value (and vs the noisy one), '
        f'test part; mean +- std over {args.seeds} seeds')
    t_start = time.perf_counter()
    raw: dict[str, dict[str, list[dict[str, float]]]] = {}
    for noise in args.noise_list:
        raw[str(noise)] = {m: [] for m in args.model_list}
        for seed in range(args.seeds):
            res = evaluate_seed(seed, noise, args.model_list, settings, config)
            for m, r in res.items():
                raw[str(noise)][m].append(r)
            print(f'  noise {noise:g} seed {seed}: ' + ', '.join(
                f'{m} {r["rmse_clean"]:.4f}' for m, r in res.items()), file=sys.stderr, flush=True)
    summary: dict[str, Any] = {}
    rows = []
    for m in args.model_list:
        row: list[Any] = [m]
        summary[m] = {}
        for noise in args.noise_list:
            runs = raw[str(noise)][m]
            c = np.array([r['rmse_clean'] for r in runs])
            n = np.array([r['rmse_noisy'] for r in runs])
            sec = np.array([r['seconds'] for r in runs])
            summary[m][str(noise)] = {'rmse_clean_mean': c.mean(), 'rmse_clean_std': c.std(),
                                      'rmse_noisy_mean': n.mean(), 'rmse_noisy_std': n.std(),
                                      'seconds_mean': sec.mean()}
            row += [f'{c.mean():.4f} +- {c.std():.4f}', f'{n.mean():.4f} +- {n.std():.4f}']
        paper = RUECKERT_TABLE1.get(m)
        row.append(' / '.join(f'{v:.3f}' for v in paper) if paper else None)
        rows.append(row)
    header = ['model']
    for noise in args.noise_list:
        header += [f'sigma={noise:g} vs clean', f'sigma={noise:g} vs noisy']
    header.append('Rueckert T1 (0.01 / 0.1)')
    out()
    out(format_table(header, rows))
    out()
    out('mean training seconds per run: ' + ', '.join(
        f'{m} ' + '/'.join(f"{summary[m][str(nz)]['seconds_mean']:.1f}" for nz in args.noise_list)
        for m in args.model_list))
    out(f'total {time.perf_counter() - t_start:.0f} s; load average now {machine_info()["load_average_1_5_15min"]}')
    if not args.no_save:
        data = {'machine': info, 'argv': argv if argv is not None else sys.argv[1:],
                'signal_config': asdict(config), 'settings': asdict(settings),
                'rueckert_table1': RUECKERT_TABLE1, 'summary': summary, 'runs': raw}
        for p in save_results('table1_signal', out.text, data):
            print(f'wrote {p}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
