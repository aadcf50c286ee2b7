"""InlineTrainer and ProcessTrainer: same interface, known answers, no hangs, clean shutdown."""
import time

import numpy as np
import pytest
import torch
from test_learner import smooth_windows

from invdyn_ros.errors import CheckpointError, ConfigError
from invdyn_ros.learning.learner import LearnerConfig, OnlineLearner
from invdyn_ros.learning.predictor import Predictor
from invdyn_ros.learning.training import (InlineTrainer, ProcessTrainer, TrainerError,
                                          checkpoint_path)

torch.set_num_threads(1)

#: a guard against hangs only; nothing asserts how fast anything is
DEADLINE_S = 180.0


def networks(**kw):
    base = dict(window=10, batch_size=32, buffer_capacity=2000, recent_capacity=500,
                min_samples=32, updates_per_sample=0.25, learning_rate=3e-3, seed=0)
    base.update(kw)
    return [('lstm', LearnerConfig(model='lstm', model_options={'hidden_size': 16, 'num_layers': 1},
                                   **base)),
            ('gru', LearnerConfig(model='gru', model_options={'hidden_size': 16, 'num_layers': 1},
                                  **base))]


def _mse(weights, name, W, T):
    cfg = dict(networks())[name]
    pred = Predictor(cfg.model, 3, cfg.model_options, cfg.window)
    pred.load_weights(weights)
    return float(np.mean((pred.predict_many(W) - T) ** 2))


def test_inline_trainer_feeds_every_learner(tmp_path):
    W, T = smooth_windows(400, seed=1)
    with InlineTrainer(3, networks()) as tr:
        assert tr.names == ('lstm', 'gru')
        first = tr.poll()   # the initial weights, like ProcessTrainer's first poll
        assert set(first) == {'lstm', 'gru'}
        assert tr.poll() is None
        for w, t in zip(W, T):
            tr.submit(w, t)
        tr.submit(np.full((10, 9), np.nan), T[0])        # rejected by both, counted
        stats = tr.stats()
        assert set(stats) == {'lstm', 'gru'}
        for s in stats.values():
            assert s['samples'] == 400 and s['steps'] > 0 and s['rejected_nonfinite'] == 1
        weights = tr.poll()
        assert set(weights) == {'lstm', 'gru'}
        assert tr.poll() is None                          # nothing new since
        paths = tr.save(tmp_path / 'run')
        assert paths == {n: checkpoint_path(tmp_path / 'run', n) for n in ('lstm', 'gru')}
    resumed = InlineTrainer(3, networks(), checkpoint=tmp_path / 'run')
    for name in ('lstm', 'gru'):
        np.testing.assert_array_equal(resumed.learners[name].predict_many(W[:20]),
                                      tr.learners[name].predict_many(W[:20]))
        assert resumed.stats()[name]['steps'] == stats[name]['steps']
    with pytest.raises(CheckpointError):
        InlineTrainer(3, networks(), checkpoint=tmp_path / 'nothing_here')


def test_trainer_config_errors():
    with pytest.raises(ConfigError):
        InlineTrainer(3, [])
    with pytest.raises(ConfigError):
        InlineTrainer(3, [('a', LearnerConfig()), ('a', LearnerConfig())])
    with pytest.raises(ConfigError):
        InlineTrainer(3, [('a', LearnerConfig(window=5)), ('b', LearnerConfig(window=10))])


def _wait(tr, predicate):
    deadline = time.monotonic() + DEADLINE_S
    latest = None
    while time.monotonic() < deadline:
        w = tr.poll()
        if w is not None:
            latest = w
        if predicate(tr.stats(), latest):
            return latest
        time.sleep(0.05)
    raise AssertionError(f'worker did not get there: {tr.stats()} {tr.counters}')


def test_process_trainer_end_to_end(tmp_path):
    W, T = smooth_windows(2000, seed=2)
    W_test, T_test = smooth_windows(300, seed=3)
    with ProcessTrainer(3, networks(), publish_period_s=0.2, chunk_size=32, queue_chunks=256,
                        max_updates_per_sample=1.0) as tr:
        initial = tr.poll()                       # the worker's initial weights come at once
        assert set(initial) == {'lstm', 'gru'}
        before = {n: _mse(initial[n], n, W_test, T_test) for n in initial}
        for w, t in zip(W, T):
            tr.submit(w, t)
        tr.submit(np.full((10, 9), np.inf), T[0])
        assert tr.counters['rejected'] == 1
        assert tr.counters['sent'] + tr.counters['dropped'] + len(tr._pending_w) == 2000

        def done(stats, latest):
            return latest is not None and all(
                s['samples'] == tr.counters['sent'] and s['steps'] >= 600 for s in stats.values())

        latest = _wait(tr, done)
        for name in ('lstm', 'gru'):
            after = _mse(latest[name], name, W_test, T_test)
            assert after < 0.5 * before[name], (name, before[name], after)
        paths = tr.save(tmp_path / 'proc')
        for name, path in paths.items():
            learner = OnlineLearner.load(path, config=dict(networks())[name], n_joints=3)
            assert learner.samples == 2000 - tr.counters['dropped']   # pending shipped by save
            assert learner.steps >= 600
        proc = tr._proc
    assert not proc.is_alive() and proc.exitcode == 0   # joined cleanly by the sentinel
    tr.close()                                          # idempotent
    assert tr.poll() is None


def test_process_trainer_never_blocks_resumes_and_reports_crash(tmp_path):
    W, T = smooth_windows(200, seed=4)
    inline = InlineTrainer(3, networks())
    for w, t in zip(W, T):
        inline.submit(w, t)
    inline.save(tmp_path / 'ck')
    expected = inline.poll()
    tr = ProcessTrainer(3, networks(), checkpoint=tmp_path / 'ck', queue_chunks=1, chunk_size=4,
                        publish_period_s=0.1)
    try:
        initial = tr.poll()
        for name in ('lstm', 'gru'):                       # resumed from the checkpoint files
            for k, v in expected[name]['model'].items():
                torch.testing.assert_close(initial[name]['model'][k], v)
        big_w, big_t = np.repeat(W, 20, axis=0), np.repeat(T, 20, axis=0)
        for w, t in zip(big_w, big_t):                     # 4000 samples into a 1-chunk queue
            tr.submit(w, t)
        assert tr.counters['dropped'] > 0                  # full queue: dropped, not blocked
        assert tr.counters['sent'] + tr.counters['dropped'] == len(big_w)
        tr._proc.kill()                                    # simulate a crash of the worker
        tr._proc.join(30)
        with pytest.raises(TrainerError, match='died'):
            tr.poll()
        with pytest.raises(TrainerError):
            tr.save(tmp_path / 'after_crash')
        stats = tr.stats()                                 # never raises
        assert tr.counters['worker_alive'] is False and set(stats) == {'lstm', 'gru'}
    finally:
        tr.close()
    assert not tr.alive


def test_process_trainer_refuses_bad_checkpoint(tmp_path):
    (tmp_path / 'bad.lstm.pt').write_bytes(b'garbage' * 100)
    (tmp_path / 'bad.gru.pt').write_bytes(b'garbage' * 100)
    with pytest.raises(CheckpointError):
        ProcessTrainer(3, networks(), checkpoint=tmp_path / 'bad')
    with pytest.raises(CheckpointError, match='does not exist'):
        ProcessTrainer(3, networks(), checkpoint=tmp_path / 'missing')


def test_process_trainer_start_up_can_be_aborted():
    """A stop requested while the worker is still importing torch ends the start-up at once:
    TrainerError('... interrupted'), and no worker process is left behind."""
    import multiprocessing
    import threading

    abort = threading.Event()
    timer = threading.Timer(0.2, abort.set)      # long before a spawned worker can be ready
    timer.start()
    try:
        with pytest.raises(TrainerError, match='interrupted'):
            ProcessTrainer(3, networks(), abort=abort)
    finally:
        timer.cancel()
    assert not [p for p in multiprocessing.active_children() if p.name == 'invdyn-trainer']


def test_a_realtime_caller_does_not_pass_sched_fifo_to_the_trainers_helper_threads(tmp_path):
    """Threads inherit their creator's scheduling. The node builds the trainer, then puts its
    control thread under SCHED_FIFO (``realtime_priority``) and submits from it: the queue feeder
    threads must already exist (started by the constructor) and the checkpoint thread must drop
    back to normal scheduling, so no helper competes with the control loop at its priority."""
    import os
    import threading

    from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig

    config = PipelineConfig.from_params({'joint_names': ['a', 'b', 'c'], 'hidden_size': 8,
                                         'window': 10, 'dual_enabled': False, 'min_samples': 32})
    tr = ProcessTrainer(3, config.networks(), publish_period_s=0.2)
    pipe = Pipeline(config, tr)
    try:
        mine = {t.native_id for t in threading.enumerate() if t.name == 'QueueFeederThread'}
        assert mine, 'the constructor starts the queue feeders'
        seen = {}

        def control_thread():
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
            except (AttributeError, OSError) as exc:
                seen['refused'] = repr(exc)
                return
            W, T = smooth_windows(200, seed=1)
            for w, t in zip(W, T):
                tr.submit(w, t)
            original = pipe.learning._write_checkpoint
            pipe.learning._write_checkpoint = lambda path: (
                seen.__setitem__('checkpoint_policy', os.sched_getscheduler(0)), original(path))[1]
            assert pipe.start_checkpoint(tmp_path / 'ck')
            seen['thread'] = pipe.learning._save_thread
            seen['fifo'] = os.sched_getscheduler(0) == os.SCHED_FIFO

        th = threading.Thread(target=control_thread)
        th.start()
        th.join()
        if 'refused' in seen:
            pytest.skip(f'SCHED_FIFO not permitted here: {seen["refused"]}')
        assert seen['fifo']
        seen['thread'].join(DEADLINE_S)
        assert seen['checkpoint_policy'] == os.SCHED_OTHER
        assert pipe.checkpoint_result()[0]
        for t in threading.enumerate():
            if t.name == 'QueueFeederThread':
                assert os.sched_getscheduler(t.native_id) == os.SCHED_OTHER, t
    finally:
        pipe.close()


def test_process_worker_ignores_stop_signals_and_exits_cleanly_past_a_full_pipe(tmp_path):
    """SIGINT / SIGTERM to the worker (a signal to the whole process group) leave it running:
    its owner saves from it first. Weights it publishes every 10 ms fill the results pipe when
    nobody polls; its feeder thread then blocks on the pipe, and the worker must still leave at
    once on the stop sentinel (exit code 0, not killed after the join timeout)."""
    import os
    import signal
    big = [(n, LearnerConfig(model=c.model, model_options={'hidden_size': 64, 'num_layers': 2},
                             window=c.window, min_samples=c.min_samples, seed=c.seed))
           for n, c in networks()]
    tr = ProcessTrainer(3, big, publish_period_s=0.01, start_timeout_s=DEADLINE_S)
    try:
        W, T = smooth_windows(64, seed=5)
        for w, t in zip(W, T):
            tr.submit(w, t)
        tr.save(tmp_path / 'x')                 # all learned: new weights to publish, ~200 kB
        os.kill(tr._proc.pid, signal.SIGTERM)
        os.kill(tr._proc.pid, signal.SIGINT)
        tr.save(tmp_path / 'y')                  # still alive and answering
        time.sleep(1.0)                          # nobody reads: the pipe fills, the feeder blocks
        assert tr._proc.is_alive()
    finally:
        tr.close(timeout=DEADLINE_S)
    assert tr._proc.exitcode == 0


def test_a_save_learns_the_queue_within_its_budget_and_the_rest_after_it(tmp_path):
    """With a zero budget a save learns one queued chunk before it writes (the rest of the
    backlog is not part of the checkpoint, so the answer does not wait for it), and the samples
    left in the queue are learned after the save: none is lost."""
    W, T = smooth_windows(1500, seed=4)
    with ProcessTrainer(3, networks(), publish_period_s=0.2, chunk_size=32, queue_chunks=256,
                        max_updates_per_sample=1.0, save_learn_budget_s=0.0) as tr:
        tr.poll()
        for w, t in zip(W, T):
            tr.submit(w, t)
        paths = tr.save(tmp_path / 'budget')
        sent = tr.counters['sent']
        assert sent == len(W) - tr.counters['dropped']
        saved = {n: OnlineLearner.load(p, config=dict(networks())[n], n_joints=3).samples
                 for n, p in paths.items()}
        assert all(0 < s < sent for s in saved.values()), (saved, sent)   # backlog left queued

        def done(stats, latest):
            return all(s['samples'] == sent for s in stats.values())

        _wait(tr, done)                                  # ... and learned after the save
