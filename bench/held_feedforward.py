"""How often the demo's controller applied a feedforward that was not new: runs of control steps
on the same learned feedforward, from ``invdyn_demo --save-recording`` outputs.

The learned feedforward comes back asynchronously (``~/reference`` -> ``~/feedforward``), one
period ahead; when no newer one has arrived by a step, the controller applies the one it has again
(``torque_controller``'s ``repeated_feedforward`` counter; ``demo_metrics.repeated_runs``). A run
of k equal feedforwards is one applied k - 1 periods late; the demo's feedforward is ~3x worse
one period late (``bench/feedforward_sensitivity.py``), so long runs show in the tracking.

Usage: ``.venv/bin/python bench/held_feedforward.py DEMO_DIR [DEMO_DIR ...]`` (each holding
``recording.npz``; ``summary.json`` beside it adds the run's counters and ratios).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (Recorder, format_machine, format_table, machine_info,  # noqa: E402
                    save_results)

from invdyn_ros.sim.demo_metrics import repeated_runs  # noqa: E402


def report(folder: Path) -> dict:
    rec = np.load(folder / 'recording.npz', allow_pickle=True)
    ff, present, t = rec['ff_used'], rec['ff_present'] > 0, rec['t_ff']
    runs = repeated_runs(ff, present)
    dt = float(np.median(np.diff(t))) if len(t) > 1 else float('nan')
    out = {'folder': str(folder), 'learned_steps': int(present.sum()),
           'repeated_steps': int((runs - 1).sum()), 'runs_ge5': int((runs >= 5).sum()),
           'runs_ge10': int((runs >= 10).sum()), 'longest_steps': int(runs.max(initial=0)),
           'longest_ms': float(runs.max(initial=0) * dt * 1e3)}
    summary = folder / 'summary.json'
    if summary.is_file():
        s = json.loads(summary.read_text())
        node = s.get('counters', {}).get('node_diagnostics', {})
        out.update(learned_over_ideal=s.get('learned_over_ideal'),
                   learned_over_ideal_unseen=s.get('learned_over_ideal_unseen'),
                   missed_by_stamp_gap=node.get('missed_by_stamp_gap'),
                   scheduling=node.get('scheduling'),
                   sim_rate_hz=s.get('sim_rate_hz'))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folders', nargs='+', type=Path)
    parser.add_argument('--note', default='', help='a line saying what the runs were (saved)')
    parser.add_argument('--save', help='also write bench/results/<SAVE>.txt/json')
    args = parser.parse_args(argv)
    out = Recorder()
    if args.note:
        out(f'# {args.note}')
    out(format_machine(machine_info()))
    cols = ('learned_steps', 'repeated_steps', 'runs_ge5', 'runs_ge10', 'longest_steps',
            'longest_ms', 'missed_by_stamp_gap', 'sim_rate_hz', 'learned_over_ideal',
            'learned_over_ideal_unseen')
    reports = [report(folder) for folder in args.folders]
    rows = [[folder.name, *(r.get(c) for c in cols), r.get('scheduling', '')]
            for folder, r in zip(args.folders, reports)]
    out(format_table(['run', *cols, 'scheduling'], rows, floatfmt='.3g'))
    out('runs_ge5 / runs_ge10: runs of >= 5 / >= 10 control steps applying the same learned '
        'feedforward; longest: the longest such run (steps, simulated ms); repeated_steps: steps '
        'that applied the feedforward of the step before.')
    if args.save:
        save_results(args.save, out.text, reports)
    return 0


if __name__ == '__main__':
    sys.exit(main())
