"""pipeline_reference.py: ReferencePath, the torque for desired states beside the measured stream
(through the pipeline's ``predict_reference``, whose predictors it owns)."""
from __future__ import annotations

import numpy as np
import torch

from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer

torch.set_num_threads(1)
NAMES = ['j1', 'j2']


def pipeline():
    cfg = PipelineConfig.from_params({'joint_names': NAMES, 'window': 3, 'hidden_size': 4,
                                      'num_layers': 1, 'torque_limits': [5.0, 5.0],
                                      'max_gap_s': 0.05, 'dual_enabled': False})
    return Pipeline(cfg, make_trainer(cfg, 'inline'))


def test_the_window_fills_with_references_then_gives_finite_clamped_torques():
    pipe = pipeline()
    assert pipe.ref_predictors is pipe.references.predictors
    assert pipe.ref_predictors['lstm'] is not pipe.predictors['lstm']   # never the stream's
    outs = [pipe.predict_reference(np.full(2, 0.1 * k), np.ones(2), np.zeros(2), stamp=0.01 * k)
            for k in range(5)]
    assert outs[0] is None and outs[1] is None                  # window 3: two warm-up rows
    assert all(o is not None and np.isfinite(o).all() and np.all(np.abs(o) <= 5.0)
               for o in outs[2:])
    assert pipe.counters['references'] == 5 and pipe.counters['reference_outputs'] == 3


def test_bad_references_are_counted_and_a_gap_restarts_the_window():
    pipe = pipeline()
    c = pipe.counters
    for bad in ((np.zeros(3), np.zeros(2), np.zeros(2)),          # wrong length
                (np.array([np.nan, 0.0]), np.zeros(2), np.zeros(2)),
                (np.full(2, 1e9), np.zeros(2), np.zeros(2)),         # beyond the position limit
                ('a', np.zeros(2), np.zeros(2))):
        assert pipe.predict_reference(*bad, stamp=0.0) is None
    assert c['rejected_references'] == 4
    for k in range(3):
        pipe.predict_reference(np.zeros(2), np.zeros(2), np.zeros(2), stamp=0.01 * k)
    assert c['reference_outputs'] == 1 and c['reference_restarts'] == 0
    # 1 s later (max_gap_s 0.05): the window restarts, two warm-up rows again
    assert pipe.predict_reference(np.zeros(2), np.zeros(2), np.zeros(2), stamp=1.0) is None
    assert c['reference_restarts'] == 1
