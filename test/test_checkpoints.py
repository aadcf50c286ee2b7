"""Checkpoint sets (invdyn_ros.learning.checkpoints): manifest written last, sha256 verified on load,
crash states on either side of the commit, start-up tidying, refusal of sets that do not fit."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from invdyn_ros.errors import CheckpointError
from invdyn_ros.learning import checkpoints as C
from invdyn_ros.learning.learner import LearnerConfig, OnlineLearner, load_checkpoint_dict

JOINTS = ['a', 'b', 'c']


def states(seed: int = 0) -> dict:
    return {name: OnlineLearner(3, LearnerConfig(model=name, window=4, model_options={'hidden_size': 4},
                                                 seed=seed)).state_dict()
            for name in ('lstm', 'gru')}


def test_a_set_round_trips_with_a_manifest_written_last(tmp_path):
    prefix = tmp_path / 'arm'
    paths = C.write_set(prefix, states(), JOINTS)
    assert paths == {n: C.checkpoint_path(prefix, n) for n in ('lstm', 'gru')}
    manifest = json.loads(Path(C.manifest_path(prefix)).read_text())
    assert manifest['joint_names'] == JOINTS and manifest['n_joints'] == 3
    assert set(manifest['networks']) == {'lstm', 'gru'}
    assert os.path.getmtime(C.manifest_path(prefix)) >= max(os.path.getmtime(p)
                                                            for p in paths.values())
    files, m = C.read_set(prefix, ['lstm', 'gru'], JOINTS, {'lstm': 'lstm', 'gru': 'gru'})
    assert files == paths and m == manifest
    assert C.verified_file(paths['gru']) == (os.path.abspath(paths['gru']), True)
    assert load_checkpoint_dict(paths['lstm'])['kind'] == 'lstm'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['arm.gru.pt', 'arm.lstm.pt',
                                                         'arm.manifest.json']


def test_flipped_bytes_are_refused_naming_the_file_and_the_manifest(tmp_path):
    prefix = tmp_path / 'arm'
    paths = C.write_set(prefix, states(), JOINTS)
    data = bytearray(Path(paths['gru']).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(paths['gru']).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='does not match its manifest') as info:
        load_checkpoint_dict(paths['gru'])
    assert paths['gru'] in str(info.value) and 'arm.manifest.json' in str(info.value)
    assert Path(paths['gru']).read_bytes() == bytes(data)        # kept for inspection


@pytest.mark.parametrize('names, joints, kinds, match', [
    (['lstm', 'gru'], ['a', 'b', 'x'], None, 'for joints'),
    (['lstm', 'gru'], ['a', 'b'], None, 'for joints'),
    (['lstm', 'mlp'], JOINTS, None, 'holds networks'),
    (['lstm', 'gru'], JOINTS, {'gru': 'mlp'}, "'gru' is a 'gru' model"),
])
def test_a_set_that_does_not_fit_is_refused(tmp_path, names, joints, kinds, match):
    prefix = tmp_path / 'arm'
    C.write_set(prefix, states(), JOINTS)
    with pytest.raises(CheckpointError, match=match) as info:
        C.read_set(prefix, names, joints, kinds)
    assert C.manifest_path(prefix) in str(info.value)


def test_a_crash_after_the_commit_reads_and_finishes_the_staged_files(tmp_path):
    prefix = tmp_path / 'arm'
    old = C.write_set(prefix, states(0), JOINTS)
    old_bytes = {n: Path(p).read_bytes() for n, p in old.items()}
    new = C.write_set(prefix, states(1), JOINTS)
    # the state of a kill between the manifest and the renames: new content still staged
    for n, p in new.items():
        os.replace(p, C.staged_path(p))
        Path(p).write_bytes(old_bytes[n])
    for p in new.values():
        assert C.verified_file(p) == (os.path.abspath(C.staged_path(p)), True)
    done = C.clean_stale(prefix)
    assert sum('completed' in line for line in done) == 2, done
    for p in new.values():
        assert C.verified_file(p) == (os.path.abspath(p), True)
        assert not os.path.exists(C.staged_path(p))


def test_a_crash_before_the_commit_keeps_the_old_set_and_the_debris_is_cleaned(tmp_path):
    prefix = tmp_path / 'arm'
    paths = C.write_set(prefix, states(0), JOINTS)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # debris of an interrupted save: a staged file, temp files of atomic_write
    Path(C.staged_path(paths['lstm'])).write_bytes(b'half of a new lstm')
    (tmp_path / '.arm.gru.pt.next.ab12cd_3.tmp').write_bytes(b'x')
    (tmp_path / '.arm.manifest.json.k2j4h5g6.tmp').write_bytes(b'{')
    (tmp_path / '.other.lstm.pt.abcdefgh.tmp').write_bytes(b'another prefix: not ours')
    C.read_set(prefix, ['lstm', 'gru'], JOINTS)
    for p in paths.values():
        C.verified_file(p)
    done = C.clean_stale(prefix)
    assert len(done) == 3, done
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == {**before, '.other.lstm.pt.abcdefgh.tmp': b'another prefix: not ours'}


def test_a_failed_save_keeps_the_previous_set_and_leaves_no_staged_file(tmp_path, monkeypatch):
    prefix = tmp_path / 'arm'
    C.write_set(prefix, states(0), JOINTS)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = C.atomic_write_text

    def disk_full(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(C, 'atomic_write_text', disk_full)
    with pytest.raises(OSError, match='No space'):
        C.write_set(prefix, states(1), JOINTS)
    monkeypatch.setattr(C, 'atomic_write_text', real)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_old_checkpoints_without_a_manifest_still_load_unverified(tmp_path):
    prefix = tmp_path / 'old'
    paths = C.write_set(tmp_path / 'new', states(), JOINTS)
    for n, p in paths.items():
        shutil.copy(p, C.checkpoint_path(prefix, n))
    files, manifest = C.read_set(prefix, ['lstm', 'gru'], JOINTS)
    assert manifest is None and set(files) == {'lstm', 'gru'}
    assert C.verified_file(files['lstm']) == (os.path.abspath(files['lstm']), False)
    assert load_checkpoint_dict(files['lstm'])['kind'] == 'lstm'
    assert C.read_set(tmp_path / 'nothing', ['lstm']) == ({}, None)


def test_a_damaged_manifest_is_refused(tmp_path):
    prefix = tmp_path / 'arm'
    C.write_set(prefix, states(), JOINTS)
    Path(C.manifest_path(prefix)).write_text('{"format": "invdyn_ros checkpoint set 1", "netw')
    with pytest.raises(CheckpointError, match='unreadable'):
        C.read_set(prefix, ['lstm', 'gru'], JOINTS)


def test_robot_id_depends_on_joints_and_networks():
    nets = [('lstm', LearnerConfig(model='lstm')), ('gru', LearnerConfig(model='gru'))]
    a = C.robot_id(JOINTS, nets)
    assert len(a) == 8 and a == C.robot_id(JOINTS, nets)
    assert a != C.robot_id(['a', 'b', 'd'], nets)
    assert a != C.robot_id(JOINTS, nets[:1])


def physics_state(n_params: int, value: float) -> dict:
    import numpy as np
    return {'theta': np.full(n_params, value), 'gate': np.zeros(3),
            'region': {'points': np.ones((2, 6)), 'seen': 2}}


def test_the_physics_member_is_staged_committed_and_tidied_like_a_network_file(tmp_path):
    import numpy as np
    prefix = tmp_path / 'arm'
    C.write_set(prefix, states(0), JOINTS, physics=physics_state(13, 1.0))
    new = C.write_set(prefix, states(1), JOINTS, physics=physics_state(13, 2.0))
    path = C.physics_path(prefix, 13)
    assert new['physics'] == path
    # a kill between the manifest and the renames: the new content is still staged
    os.replace(path, C.staged_path(path))
    np.testing.assert_array_equal(C.read_physics(prefix)[13]['theta'], np.full(13, 2.0))
    assert any('completed the committed save' in line and 'physics-13' in line
               for line in C.clean_stale(prefix))
    assert os.path.isfile(path) and not os.path.exists(C.staged_path(path))
    # an uncommitted staged physics file is debris
    Path(C.staged_path(path)).write_bytes(b'half a save')
    assert any('removed uncommitted' in line for line in C.clean_stale(prefix))
    assert C.read_physics(prefix)[13]['region']['seen'] == 2
    # a save of another model size carries the old member forward, unchanged
    before = Path(path).read_bytes()
    C.write_set(prefix, states(2), JOINTS, physics=physics_state(20, 3.0))
    assert Path(path).read_bytes() == before
    assert sorted(C.read_physics(prefix)) == [13, 20]
    # a save without a physics stage (prior: none) keeps them listed too
    C.write_set(prefix, states(3), JOINTS)
    assert sorted(C.read_physics(prefix)) == [13, 20] and Path(path).read_bytes() == before
