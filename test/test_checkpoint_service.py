"""CheckpointService: ~/save_checkpoint answers with the real outcome of a background save of a
real pipeline (inline trainer), the periodic save, and the result kept for the diagnostics.
The service through a running node: test_node / test_faults."""
from __future__ import annotations

import os
import threading
import time

from std_srvs.srv import Trigger
from conftest import RecordingLog as Log
from test_pipeline import FixedTrainer, constant_mlp_weights, mlp_config

from invdyn_ros.pipeline.pipeline import Pipeline, make_trainer
from invdyn_ros.ros.checkpoint_service import CheckpointService


def pipeline():
    cfg = mlp_config()
    return Pipeline(cfg, make_trainer(cfg, 'inline'))


def drive(coroutine):
    """Run the async service callback to its end as an executor would (its Future is set from
    the save thread)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            coroutine.send(None)
        except StopIteration as stop:
            return stop.value
        assert time.monotonic() < deadline, 'the save never answered'
        time.sleep(0.01)


def test_a_request_answers_success_when_the_files_are_written(tmp_path):
    pipe, log = pipeline(), Log()
    saves = CheckpointService(pipe, str(tmp_path / 'ck'), log)
    try:
        response = saves.on_request(Trigger.Request(), Trigger.Response())
        assert response.success, response.message
        assert response.message.startswith('checkpoint written:')
        assert os.path.isfile(tmp_path / 'ck.manifest.json')
        response = drive(saves.on_request_async(Trigger.Request(), Trigger.Response()))
        assert response.success, response.message
        assert saves.last == 'none yet' and saves.failed is None
        saves.check_result()                          # the last finished save, for diagnostics
        assert saves.last.startswith('ok ') and saves.failed is None
        assert log.lines[-1][0] == 'info' and 'checkpoint written' in log.lines[-1][1]
    finally:
        pipe.close()


def test_a_failed_save_answers_false_with_the_reason_and_is_kept_for_diagnostics(tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    pipe, log = pipeline(), Log()
    saves = CheckpointService(pipe, str(blocker / 'ck'), log)    # its folder cannot be made
    try:
        response = drive(saves.on_request_async(Trigger.Request(), Trigger.Response()))
        assert not response.success
        assert response.message.startswith('checkpoint failed:')
        assert 'the previous checkpoint is kept' in response.message
        saves.check_result()
        assert saves.failed and saves.last.startswith('failed: ')
        assert log.lines[-1][0] == 'error'
    finally:
        pipe.close()


def test_without_a_path_the_request_is_refused_and_nothing_is_written(tmp_path):
    pipe = pipeline()
    saves = CheckpointService(pipe, '', Log())
    try:
        response = saves.on_request(Trigger.Request(), Trigger.Response())
        assert not response.success and response.message == 'checkpoint_path is not set'
        saves.check_result()
        assert saves.last == 'none yet' and os.listdir(tmp_path) == []
    finally:
        pipe.close()


def test_the_periodic_save_starts_one_and_skips_with_a_warning_while_it_runs(tmp_path):
    trainer = FixedTrainer(constant_mlp_weights([0.0, 0.0], [1.0, 1.0]))
    trainer.save_gate = threading.Event()             # the save lasts until the test says
    pipe, log = Pipeline(mlp_config(), trainer), Log()
    saves = CheckpointService(pipe, str(tmp_path / 'ck'), log)
    try:
        saves.on_timer()
        assert pipe.checkpoint_running and log.lines == []
        saves.on_timer()
        assert log.lines == [('warning', 'periodic checkpoint skipped (one is running or the '
                                         'trainer has failed)')]
        trainer.save_gate.set()
        pipe.save_checkpoint_wait()
        saves.check_result()
        assert saves.last.startswith('ok ') and saves.failed is None
    finally:
        trainer.save_gate.set()
        pipe.close()
