"""The Trainer protocol, the one TrainingLoop the trainers share, and its one save path."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from test_learner import smooth_windows

from invdyn_ros.learning.checkpoints import checkpoint_to_resume, read_manifest
from invdyn_ros.learning.trainers import InlineTrainer, Trainer, TrainingLoop, build_learners
from invdyn_ros.learning.training import TRAINER_KINDS, make_trainer
from invdyn_ros.pipeline.config import PipelineConfig

torch.set_num_threads(1)

#: a guard against hangs only; nothing asserts how fast anything is
DEADLINE_S = 180.0
JOINTS = ['a', 'b', 'c']


def config() -> PipelineConfig:
    return PipelineConfig.from_params({
        'joint_names': JOINTS, 'hidden_size': 8, 'num_layers': 1, 'window': 4, 'batch_size': 16,
        'min_samples': 16, 'buffer_capacity': 500, 'recent_capacity': 100,
        'updates_per_sample': 0.25, 'learning_rate': 1e-2})


def learners(cap_config: PipelineConfig | None = None) -> dict:
    cfg = cap_config or config()
    return build_learners(len(JOINTS), cfg.networks(), {})


def mse(learner, W, T) -> float:
    return float(np.mean((learner.predict_many(W) - T) ** 2))


@pytest.mark.parametrize('kind', TRAINER_KINDS)
def test_every_trainer_kind_is_a_trainer_that_learns_publishes_and_saves(tmp_path, kind):
    cfg = config()
    W, T = smooth_windows(300, window=4, seed=1)
    options = {} if kind == 'inline' else {'publish_period_s': 0.05}
    with make_trainer(cfg, kind, **options) as tr:
        assert isinstance(tr, Trainer)
        assert tr.names == cfg.network_names and tr.alive
        initial = tr.poll()                      # every kind hands out its initial weights
        assert set(initial) == set(cfg.network_names)
        for w, t in zip(W, T):
            tr.submit(w, t)
        deadline = time.monotonic() + DEADLINE_S
        latest = None
        while not (latest is not None and all(s['samples'] == len(W) and s['steps'] > 0
                                              for s in tr.stats().values())):
            assert time.monotonic() < deadline, (kind, tr.stats())
            latest = tr.poll() or latest
            time.sleep(0.02)
        assert set(latest) == set(cfg.network_names)   # learned weights published
        files = tr.save(tmp_path / kind, joint_names=cfg.joint_names, learn_pending=True)
        assert set(files) == set(cfg.network_names)
    assert not tr.alive
    assert read_manifest(tmp_path / kind)['joint_names'] == JOINTS
    resumed_files, verified = checkpoint_to_resume(cfg, tmp_path / kind)
    assert verified and resumed_files == files
    resumed = make_trainer(cfg, 'inline', checkpoint=tmp_path / kind)
    assert all(s['samples'] == len(W) for s in resumed.stats().values())


def test_the_loop_learns_then_spends_spare_time_up_to_the_cap():
    W, T = smooth_windows(600, window=4, seed=2)
    W_test, T_test = smooth_windows(200, window=4, seed=3)
    lrs = learners()
    before = {n: mse(lr, W_test, T_test) for n, lr in lrs.items()}
    loop = TrainingLoop(lrs, send=lambda w, s: True, max_updates_per_sample=2.0)
    k = len(lrs)
    for s in range(0, len(W), 50):
        chunk = (W[s:s + 50], np.repeat(T[s:s + 50, None, :], k, axis=1))
        assert loop.turn(chunk) is True
    assert loop.counters['received_chunks'] == 12
    assert all(lr.samples == len(W) for lr in lrs.values())
    steps = {n: lr.steps for n, lr in lrs.items()}
    assert all(0 < s < len(W) for s in steps.values())          # updates_per_sample 0.25
    extra = 0
    while loop.turn(None):                                       # spare time, up to the cap
        extra += 1
        assert extra <= 2 * k * len(W)
    assert loop.counters['extra_steps'] == extra > 0
    assert all(lr.steps >= 2 * lr.samples for lr in lrs.values())   # cap: 2 steps per sample
    assert sum(lr.steps for lr in lrs.values()) == sum(steps.values()) + extra
    for name, lr in lrs.items():
        assert mse(lr, W_test, T_test) < 0.5 * before[name], name


def test_the_loop_publishes_each_change_once_and_resends_what_was_not_delivered():
    W, T = smooth_windows(200, window=4, seed=4)
    lrs = learners()
    sent, deliver = [], [True]

    def send(weights, stats):
        sent.append((weights, stats))
        return deliver[0]

    loop = TrainingLoop(lrs, send=send, publish_period_s=3600.0)
    assert set(loop.export()) == set(lrs)
    loop.publish()                                   # not due yet
    assert sent == []
    loop.publish(force=True)                         # due, nothing new: stats only
    assert sent[-1][0] is None and set(sent[-1][1]) == set(lrs)
    loop.learn(W, np.repeat(T[:, None, :], len(lrs), axis=1))
    deliver[0] = False
    loop.publish(force=True)
    assert sent[-1][0] is not None and loop.counters['dropped_publishes'] == 1
    deliver[0] = True
    loop.publish(force=True)                         # the undelivered weights go out again
    weights = sent[-1][0]
    assert weights is not None
    for name, lr in lrs.items():
        for key, value in lr.export_weights()['model'].items():
            torch.testing.assert_close(weights[name]['model'][key], value)
    loop.publish(force=True)
    assert sent[-1][0] is None and len(sent) == 4


def test_the_one_save_path_takes_the_states_under_the_lock_and_resumes(tmp_path):
    W, T = smooth_windows(200, window=4, seed=5)
    cfg = config()
    lrs = learners(cfg)
    loop = TrainingLoop(lrs, send=lambda w, s: True)
    loop.learn(W, np.repeat(T[:, None, :], len(lrs), axis=1))
    lock = threading.Lock()
    lock.acquire()
    result = {}
    saver = threading.Thread(target=lambda: result.update(
        loop.save(tmp_path / 'set', joint_names=JOINTS, lock=lock)))
    saver.start()
    saver.join(0.2)
    assert saver.is_alive() and not result           # waits for the lock
    lock.release()
    saver.join(DEADLINE_S)
    assert set(result) == set(lrs)
    resumed = InlineTrainer(len(JOINTS), cfg.networks(), checkpoint=tmp_path / 'set')
    for name, lr in lrs.items():
        np.testing.assert_array_equal(resumed.learners[name].predict_many(W[:20]),
                                      lr.predict_many(W[:20]))
        assert resumed.learners[name].steps == lr.steps


def test_bad_labels_are_rejected_and_counted_by_every_learner():
    cfg = config()
    with InlineTrainer(len(JOINTS), cfg.networks()) as tr:
        tr.submit(np.zeros((4, 9)), np.zeros(5))          # wrong label shape
        tr.submit(np.full((4, 9), np.nan), np.zeros(3))  # non-finite window
        stats = tr.stats()
    assert all(s['samples'] == 0 for s in stats.values())
    assert all(s['rejected_shape'] + s['rejected_nonfinite'] == 2 for s in stats.values()), stats
    assert not tr.alive and tr.poll() is None
