"""trainer_setup: the trainer resumed by the checkpoint_mismatch rule, renice."""
import os

import pytest
from conftest import RecordingLog as Log

from invdyn_ros.errors import CheckpointError
from invdyn_ros.learning.training import make_trainer
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig
from invdyn_ros.ros.trainer_setup import renice_trainer, start_trainer, trainer_options


def config(names):
    return PipelineConfig.from_params({'joint_names': names, 'torque_limits': [5.0] * len(names)})


def test_trainer_options_by_kind():
    assert trainer_options('inline', 0.1, 2.0, 10, abort=object()) == {}
    assert trainer_options('thread', 0.1, 2.0, 10) == {
        'publish_period_s': 0.1, 'max_updates_per_sample': 2.0, 'nice': 10}
    flag = object()
    assert trainer_options('process', 0.1, 2.0, 10, abort=flag) == {
        'publish_period_s': 0.1, 'max_updates_per_sample': 2.0, 'abort': flag}
    assert 'abort' not in trainer_options('process', 0.1, 2.0, 10)


def test_no_checkpoint_path_gives_a_fresh_trainer():
    trainer, path, physics = start_trainer(config(['a', 'b']), 'inline', '', 'refuse', {}, Log())
    try:
        assert path == '' and physics == {}
    finally:
        trainer.close()


def test_a_checkpoint_of_another_robot_is_refused_or_learned_anew_beside_it(tmp_path):
    path = str(tmp_path / 'arm')
    cfg2 = config(['a', 'b'])
    pipe = Pipeline(cfg2, make_trainer(cfg2, 'inline'))
    try:
        pipe.save_checkpoint(path)
    finally:
        pipe.close()
    before = sorted(os.listdir(tmp_path))
    log = Log()
    trainer, used, _ = start_trainer(cfg2, 'inline', path, 'refuse', {}, log)   # it fits
    trainer.close()
    assert used == path and any('sha256 verified' in text for _, text in log.lines)

    cfg3 = config(['a', 'b', 'c'])
    with pytest.raises(CheckpointError, match='left untouched; set another checkpoint_path'):
        start_trainer(cfg3, 'inline', path, 'refuse', {}, Log())
    log = Log()
    trainer, used, _ = start_trainer(cfg3, 'inline', path, 'fresh', {}, log)
    trainer.close()
    assert used != path and used.startswith(path + '-')
    assert log.lines[0][0] == 'warning' and f'uses checkpoint_path {used}' in log.lines[0][1]
    assert sorted(os.listdir(tmp_path)) == before                 # nothing renamed or removed


def test_renice_is_only_for_a_process_trainer_with_a_nice_level():
    log = Log()
    renice_trainer('inline', 10, log=log)
    renice_trainer('process', 0, log=log)          # trainer_nice 0: left alone
    renice_trainer('process', 10, log=log)         # no worker process running: nothing to do
    assert log.lines == []
