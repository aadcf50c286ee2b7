"""LearningSide: the pipeline's trainer, samples, weight polls and checkpoints (blocking and from a
background thread), through a Pipeline and on its own."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from test_pipeline import (NAMES, FixedTrainer, constant_mlp_weights, feed_constant,
                           generated_stream, mlp_config)

from invdyn_ros.errors import CheckpointError, TrainerError
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, checkpoint_files, make_trainer
from invdyn_ros.pipeline.pipeline_learning import LearningSide


def test_checkpoint_roundtrip_and_corrupt_file(tmp_path):
    t, q, qd, tau = generated_stream(count=300)
    params = {'joint_names': NAMES, 'hidden_size': 8, 'num_layers': 1, 'window': 4,
              'min_samples': 32, 'batch_size': 16, 'updates_per_sample': 0.2}
    cfg = PipelineConfig.from_params(params)
    pipe = Pipeline(cfg, make_trainer(cfg, 'inline'))
    for i in range(len(t)):
        pipe.process(t[i], q[i], qd[i], tau[i])
    path = tmp_path / 'sub' / 'ckpt.pt'             # a trailing .pt is dropped from the prefix
    files = pipe.save_checkpoint(path)
    assert files == checkpoint_files(cfg, path)
    assert sorted(os.path.basename(f) for f in files.values()) == ['ckpt.gru.pt', 'ckpt.lstm.pt']
    assert all(os.path.isfile(f) for f in files.values())
    pipe.refresh_weights()
    resumed = Pipeline(cfg, make_trainer(cfg, 'inline', checkpoint=path))
    window = np.random.default_rng(1).normal(size=(4, 6))
    for name in cfg.network_names:
        np.testing.assert_allclose(resumed.predictors[name].predict(window),
                                   pipe.predictors[name].predict(window), rtol=1e-6, atol=1e-6)
    # no checkpoint files yet: a fresh start, not an error
    assert make_trainer(cfg, 'inline', checkpoint=tmp_path / 'none') is not None
    with open(files['lstm'], 'wb') as f:
        f.write(b'not a checkpoint')
    with pytest.raises(CheckpointError):
        make_trainer(cfg, 'inline', checkpoint=path)


def test_background_checkpoint_does_not_stop_processing_or_lose_samples():
    cfg = mlp_config()
    trainer = FixedTrainer(constant_mlp_weights([0.0, 0.0], [1.0, 1.0]))
    trainer.save_gate = threading.Event()              # the save lasts until the test says
    pipe = Pipeline(cfg, trainer)
    q, tau = np.zeros(2), np.zeros(2)
    feed_constant(pipe, 20, q, tau)
    assert trainer.submitted == 18
    assert pipe.start_checkpoint('/tmp/unused-prefix') is True
    assert pipe.start_checkpoint('/tmp/unused-prefix') is False          # one at a time
    outs = feed_constant(pipe, 30, q, tau, t0=10.2)    # returns while the save still runs
    assert all(o is not None for o in outs) and pipe.checkpoint_running
    assert trainer.submitted == 18                     # the trainer is left alone meanwhile
    trainer.save_gate.set()
    pipe.save_checkpoint_wait()
    feed_constant(pipe, 20, q, tau, t0=10.5)           # backlog handed over, 4 per sample
    assert trainer.submitted == 18 + 30 + 20
    assert pipe.checkpoint_result() == (True, {})
    pipe.close()


class FailingTrainer(FixedTrainer):
    """A trainer whose worker died: every poll raises TrainerError."""

    def __init__(self) -> None:
        super().__init__({})
        self.polls = 0

    def poll(self):
        self.polls += 1
        raise TrainerError('worker died')


def test_a_failed_trainer_is_remembered_counted_and_left_alone():
    trainer = FailingTrainer()
    counters = {'submitted': 0, 'backlog_dropped': 0, 'trainer_errors': 0}
    side = LearningSide(trainer, counters, poll_every=3, joint_names=('a',))
    side.submit(np.zeros((2, 3)), np.zeros(1))
    assert trainer.submitted == 1 and counters['submitted'] == 1
    assert side.poll_due() is None and side.poll_due() is None and trainer.polls == 0
    assert side.poll_due() is None and trainer.polls == 1        # every poll_every-th call
    assert side.error == 'worker died' and counters['trainer_errors'] == 1
    assert side.poll() is None and trainer.polls == 1            # never asked again
    side.submit(np.zeros((2, 3)), np.zeros(1))
    assert trainer.submitted == 1 and counters['submitted'] == 1  # nothing more submitted
    assert side.start_checkpoint('/tmp/unused-prefix', lambda: None) is False
    assert side.checkpoint_result() is None


def test_samples_wait_in_the_backlog_while_a_checkpoint_is_written():
    trainer = FixedTrainer({})
    trainer.save_gate = threading.Event()
    counters = {'submitted': 0, 'backlog_dropped': 0, 'trainer_errors': 0}
    side = LearningSide(trainer, counters, poll_every=1, joint_names=('a',))
    assert side.start_checkpoint('/tmp/unused-prefix', lambda: None)
    for _ in range(6):
        side.submit(np.zeros((2, 3)), np.zeros(1))
    assert side.saving and side.backlog == 6 and trainer.submitted == 0
    trainer.save_gate.set()
    side.save_checkpoint_wait()                                  # no deadline: it ends
    assert side.tidy() and side.backlog == 2 and trainer.submitted == 4   # 4 per call
    assert side.tidy() and side.backlog == 0 and trainer.submitted == 6
    assert counters['submitted'] == 6 and not side.saving
    assert side.checkpoint_result() == (True, {}) and side.checkpoint_result() is None
