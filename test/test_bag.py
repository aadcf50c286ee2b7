"""rosbag2 JointState bags: exact round trips, reading by joint name, and bad bags."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from invdyn_ros.errors import BagError, DatasetError
from invdyn_ros.offline.bag import (DEFAULT_START_TIME_NS, JOINT_STATE_TYPE, BagReader, bag_info,
                                    joint_state_typestore, read_joint_states, read_recording,
                                    write_joint_states)
from invdyn_ros.offline.datasets import Recording, make_time_axis

START_NS = 1_700_000_000_123_456_789  # a realistic epoch stamp: floats of seconds would lose ns


def synthetic_recording(n: int = 40, with_qd: bool = True) -> Recording:
    rng = np.random.default_rng(1)
    t, segs = make_time_axis([n // 2, n - n // 2], 100.0)
    q = rng.standard_normal((n, 3))
    q[0] = [1e-300, -0.0, 1.0 / 3.0]  # values that a lossy path would change
    return Recording(name='syn', joint_names=('j1', 'j2', 'j3'), rate_hz=100.0, t=t, q=q,
                     qd=rng.standard_normal((n, 3)) if with_qd else None, qdd=None,
                     tau=rng.standard_normal((n, 3)) * 100, segments=segs)


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_round_trip_is_bit_identical(tmp_path, storage):
    rec = synthetic_recording()
    path = tmp_path / 'bag'
    info = write_joint_states(path, rec, storage=storage, start_time_ns=START_NS)
    assert info.storage == storage
    assert info.topics['/joint_states'].count == len(rec)
    assert info.topics['/joint_states'].msgtype == JOINT_STATE_TYPE

    samples = list(read_joint_states(path))
    assert len(samples) == len(rec)
    expected_ns = START_NS + np.rint(rec.t * 1e9).astype(np.int64)
    for k, s in enumerate(samples):
        assert s.names == rec.joint_names
        assert s.stamp_ns == expected_ns[k] and s.log_time_ns == expected_ns[k]
        # bit-identical: compare the bytes, so -0.0 vs 0.0 or 1 ulp would fail
        assert s.position.tobytes() == rec.q[k].tobytes()
        assert s.velocity.tobytes() == rec.qd[k].tobytes()
        assert s.effort.tobytes() == rec.tau[k].tobytes()

    back = read_recording(path)
    assert back.meta['start_time_ns'] == START_NS
    assert back.segments == rec.segments and back.joint_names == rec.joint_names
    np.testing.assert_array_equal(back.q, rec.q)
    np.testing.assert_array_equal(back.qd, rec.qd)
    np.testing.assert_array_equal(back.tau, rec.tau)
    np.testing.assert_allclose(back.t, rec.t, atol=1e-9)
    assert back.rate_hz == pytest.approx(100.0)
    assert sum(back.meta['skipped'].values()) == 0


def test_missing_velocity_is_written_empty_and_read_as_none(tmp_path):
    rec = synthetic_recording(with_qd=False)
    write_joint_states(tmp_path / 'bag', rec, storage='mcap')
    first = next(iter(read_joint_states(tmp_path / 'bag')))
    assert first.velocity.shape == (0,)
    assert read_recording(tmp_path / 'bag').qd is None


def _write_raw_bag(path: Path, storage: StoragePlugin = StoragePlugin.SQLITE3) -> list[tuple]:
    """A bag as a real system records it: two topics, joint order changing between messages,
    an extra joint, missing velocities, and messages the reader must skip. Returns what it wrote."""
    ts = joint_state_typestore()
    JointState = ts.types[JOINT_STATE_TYPE]
    Header = ts.types['std_msgs/msg/Header']
    Time = ts.types['builtin_interfaces/msg/Time']
    String = ts.types['std_msgs/msg/String']
    nan = float('nan')
    # (stamp_ns, names, position, velocity, effort)
    msgs = [
        (1_000_000_000, ['a', 'b', 'gripper'], [1.0, 2.0, 9.0], [0.1, 0.2, 0.9], [10.0, 20.0, 90.0]),
        (1_010_000_000, ['gripper', 'b', 'a'], [9.0, 2.5, 1.5], [0.9, 0.25, 0.15], [90.0, 25.0, 15.0]),
        (1_020_000_000, ['b', 'a'], [3.0, 2.0], [], [30.0, 20.0]),              # no velocity
        (1_030_000_000, ['a'], [4.0], [0.4], [40.0]),                             # joint b missing
        (1_040_000_000, ['a', 'b'], [nan, 5.0], [0.5, 0.5], [50.0, 50.0]),      # NaN
        (1_050_000_000, ['a', 'b'], [6.0, 6.0], [0.6, 0.6], []),                # no effort
        (1_005_000_000, ['a', 'b'], [7.0, 7.0], [0.7, 0.7], [70.0, 70.0]),      # stamp goes back
        (1_060_000_000, ['a', 'b'], [8.0], [], [80.0, 80.0]),                    # length mismatch
        (1_070_000_000, ['b', 'a'], [4.5, 3.5], [0.45, 0.35], [45.0, 35.0]),
    ]
    with Writer(path, version=9, storage_plugin=storage) as writer:
        js = writer.add_connection('/joint_states', JOINT_STATE_TYPE, typestore=ts)
        other = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=ts)
        for i, (ns, names, pos, vel, eff) in enumerate(msgs):
            log_ns = 1_000_000_000 + i * 10_000_000  # receive order = list order
            msg = JointState(header=Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9),
                                           frame_id='base'),
                             name=names, position=np.array(pos, dtype=np.float64),
                             velocity=np.array(vel, dtype=np.float64),
                             effort=np.array(eff, dtype=np.float64))
            writer.write(js, log_ns, ts.serialize_cdr(msg, JOINT_STATE_TYPE))
            writer.write(other, log_ns + 1, ts.serialize_cdr(String(data=f'hello {i}'),
                                                           'std_msgs/msg/String'))
    return msgs


@pytest.mark.parametrize('storage', [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_reads_joints_by_name_and_skips_bad_messages(tmp_path, storage):
    msgs = _write_raw_bag(tmp_path / 'raw', storage)
    raw = list(read_joint_states(tmp_path / 'raw'))
    assert len(raw) == len(msgs)
    assert raw[1].names == ('gripper', 'b', 'a')  # as stored, not reordered
    assert raw[2].velocity.size == 0 and raw[5].effort.size == 0
    assert raw[0].frame_id == 'base'

    rec = read_recording(tmp_path / 'raw', joints=['a', 'b'])
    assert rec.joint_names == ('a', 'b')
    np.testing.assert_array_equal(rec.q, [[1.0, 2.0], [1.5, 2.5], [2.0, 3.0], [6.0, 6.0],
                                          [3.5, 4.5]])
    # the message without effort is kept, as the node keeps it (predicted, not learned): NaN row
    np.testing.assert_array_equal(rec.tau, [[10, 20], [15, 25], [20, 30], [np.nan, np.nan],
                                            [35, 45]])
    assert rec.meta['effort_missing'] == 1
    # velocity per message, as the node sees it: NaN where the message had none
    np.testing.assert_array_equal(rec.qd, [[0.1, 0.2], [0.15, 0.25], [np.nan, np.nan],
                                           [0.6, 0.6], [0.35, 0.45]])
    assert rec.meta['velocity_missing'] == 1 and rec.meta['velocity_nonfinite'] == 0
    assert rec.meta['skipped'] == {'missing_joint': 1, 'duplicate_names': 0, 'nonfinite': 1,
                                   'lengths': 1, 'zero_stamp': 0, 'stamp_not_increasing': 1}
    np.testing.assert_allclose(rec.t, [0.0, 0.01, 0.02, 0.05, 0.07])
    assert rec.meta['start_time_ns'] == 1_000_000_000

    # default joints: the first message's names, extra joint included
    assert read_recording(tmp_path / 'raw').joint_names == ('a', 'b', 'gripper')

    info = bag_info(tmp_path / 'raw')
    assert info.topics['/chatter'].count == len(msgs)
    assert info.topics['/chatter'].msgtype == 'std_msgs/msg/String'
    assert info.message_count == 2 * len(msgs)


def test_velocity_used_when_every_accepted_message_has_it(tmp_path):
    _write_raw_bag(tmp_path / 'raw')
    # the messages with velocity for a and b, selected by joint 'gripper' being present
    rec = read_recording(tmp_path / 'raw', joints=['gripper', 'a'])
    np.testing.assert_array_equal(rec.qd, [[0.9, 0.1], [0.9, 0.15]])


def test_nonfinite_velocities_keep_the_message_and_roundtrip(tmp_path):
    """A NaN/Inf velocity is unknown (the node differentiates positions there), not a reason to
    drop the sample; writing such a recording back keeps 'no velocity' as an empty array."""
    rec = synthetic_recording(n=20)
    qd = rec.qd.copy()
    qd[3, 1] = np.nan                       # one unknown entry
    qd[7] = np.nan                          # no velocity at all in this message
    write_joint_states(tmp_path / 'bag', dataclasses.replace(rec, qd=qd))
    raw = list(read_joint_states(tmp_path / 'bag'))
    assert raw[7].velocity.size == 0 and np.isnan(raw[3].velocity[1])
    back = read_recording(tmp_path / 'bag')
    assert len(back.t) == 20
    np.testing.assert_array_equal(back.qd, qd)
    assert back.meta['velocity_missing'] == 1 and back.meta['velocity_nonfinite'] == 1
    with pytest.raises(DatasetError, match='qd'):          # Inf is never a valid Recording value
        bad = qd.copy()
        bad[0, 0] = np.inf
        dataclasses.replace(rec, qd=bad)


def test_segments_split_at_stamp_gaps(tmp_path):
    rec = synthetic_recording(n=30)
    write_joint_states(tmp_path / 'bag', rec)
    assert read_recording(tmp_path / 'bag').segments == ((0, 15), (15, 30))
    assert read_recording(tmp_path / 'bag', segment_gap_s=5.0).segments == ((0, 30),)


def test_topic_absent_and_wrong_type_list_available_topics(tmp_path):
    _write_raw_bag(tmp_path / 'raw')
    with pytest.raises(BagError, match=r"no topic '/nope'.*/chatter.*/joint_states"):
        read_joint_states(tmp_path / 'raw', '/nope')
    with pytest.raises(BagError, match='std_msgs/msg/String'):
        read_recording(tmp_path / 'raw', topic='/chatter')


def test_missing_paths_and_non_bags(tmp_path):
    with pytest.raises(BagError, match='no such bag'):
        bag_info(tmp_path / 'missing')
    with pytest.raises(BagError, match='not a rosbag2 bag'):
        bag_info(tmp_path)  # an empty folder
    (tmp_path / 'notes.txt').write_text('hello')
    with pytest.raises(BagError, match='not a rosbag2 bag'):
        read_joint_states(tmp_path / 'notes.txt')


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in ('.db3', '.mcap'))


def test_corrupt_sqlite_raises_bag_error(tmp_path):
    write_joint_states(tmp_path / 'bag', synthetic_recording(), storage='sqlite3')
    db = _storage_file(tmp_path / 'bag')
    db.write_bytes(np.random.default_rng(0).bytes(db.stat().st_size))
    with pytest.raises(BagError, match=str(tmp_path / 'bag')):
        list(read_joint_states(tmp_path / 'bag'))


@pytest.mark.parametrize('keep', [0.5, 0.9])
def test_truncated_mcap_raises_bag_error(tmp_path, keep):
    write_joint_states(tmp_path / 'bag', synthetic_recording(200), storage='mcap')
    mcap = _storage_file(tmp_path / 'bag')
    data = mcap.read_bytes()
    mcap.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(BagError):
        list(read_joint_states(tmp_path / 'bag'))


def test_garbage_inside_mcap_chunk_raises_bag_error_while_reading(tmp_path):
    write_joint_states(tmp_path / 'bag', synthetic_recording(200), storage='mcap')
    mcap = _storage_file(tmp_path / 'bag')
    data = bytearray(mcap.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 2000] = np.random.default_rng(0).bytes(2000)
    mcap.write_bytes(bytes(data))
    with pytest.raises(BagError):
        list(read_joint_states(tmp_path / 'bag'))


def test_single_storage_file_and_folder_without_metadata(tmp_path):
    rec = synthetic_recording()
    write_joint_states(tmp_path / 'bag', rec, storage='mcap')
    mcap = _storage_file(tmp_path / 'bag')
    assert len(list(read_joint_states(mcap))) == len(rec)
    (tmp_path / 'bag' / 'metadata.yaml').unlink()
    assert len(list(read_joint_states(tmp_path / 'bag'))) == len(rec)


def test_write_refuses_existing_path_and_bad_arguments(tmp_path):
    rec = synthetic_recording()
    (tmp_path / 'exists').mkdir()
    with pytest.raises(BagError, match='exists'):
        write_joint_states(tmp_path / 'exists', rec)
    with pytest.raises(BagError, match='storage'):
        write_joint_states(tmp_path / 'x', rec, storage='rosbag1')
    with pytest.raises(BagError, match='start_time_ns'):
        write_joint_states(tmp_path / 'y', rec, start_time_ns=-5)
    with pytest.raises(BagError, match='not positive'):     # a zero stamp means "unset" in ROS
        write_joint_states(tmp_path / 'z', rec, start_time_ns=0)
    with pytest.raises(BagError, match='version'):
        write_joint_states(tmp_path / 'v', rec, version=5)
    assert not any((tmp_path / p).exists() for p in 'xyzv')


def test_default_stamps_are_the_recordings_own_time_or_a_realistic_epoch(tmp_path):
    rec = synthetic_recording(10)                               # t from 0, no absolute time
    write_joint_states(tmp_path / 'a', rec)
    first = [s.stamp_ns for s in read_joint_states(tmp_path / 'a')]
    assert first[0] == DEFAULT_START_TIME_NS == 1_700_000_000 * 10**9
    # a recording read from a bag keeps its stamps when written again
    write_joint_states(tmp_path / 'b', rec, start_time_ns=START_NS)
    write_joint_states(tmp_path / 'c', read_recording(tmp_path / 'b'))
    assert [s.stamp_ns for s in read_joint_states(tmp_path / 'c')] == \
        [s.stamp_ns for s in read_joint_states(tmp_path / 'b')]
    # a time axis already in epoch seconds is taken as it is
    epoch = dataclasses.replace(rec, t=rec.t + 1_650_000_000.0)
    write_joint_states(tmp_path / 'd', epoch)
    got = read_recording(tmp_path / 'd').meta['start_time_ns']
    assert abs(got - 1_650_000_000 * 10**9) < 1000


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_rosbag2_version_8_is_what_humble_parses_and_9_is_optional(tmp_path, storage):
    """Humble's rosbag2 (metadata_io.cpp) reads ``offered_qos_profiles`` with
    ``as<std::string>()`` for every version >= 4: version 8 writes that string, version 9 a YAML
    list (which only Jazzy's reader parses)."""
    import yaml

    rec = synthetic_recording(10)
    for version in (8, 9):
        path = tmp_path / f'v{version}'
        write_joint_states(path, rec, storage=storage, version=version)
        meta = yaml.safe_load((path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        assert meta['version'] == version
        qos = meta['topics_with_message_count'][0]['topic_metadata']['offered_qos_profiles']
        assert isinstance(qos, str if version == 8 else list), qos
        assert meta['files'] and meta['files'][0]['message_count'] == len(rec)   # Humble: >= 5
        back = read_recording(path)
        np.testing.assert_array_equal(back.q, rec.q)
    default = tmp_path / 'default'
    write_joint_states(default, rec, storage=storage)
    assert yaml.safe_load((default / 'metadata.yaml').read_text())[
        'rosbag2_bagfile_information']['version'] == 8


def test_stream_is_reiterable_and_reader_context(tmp_path):
    rec = synthetic_recording(10)
    write_joint_states(tmp_path / 'bag', rec)
    stream = read_joint_states(tmp_path / 'bag')
    assert len(stream) == 10
    assert [s.stamp_ns for s in stream] == [s.stamp_ns for s in stream]
    with BagReader(tmp_path / 'bag') as bag:
        assert bag.count('/joint_states') == 10
        assert 'messages: 10' in bag.info().summary()


def test_messages_without_effort_are_evaluated_as_the_node_treats_them(tmp_path):
    """A bag whose messages partly lack effort: read_recording keeps them (NaN effort rows), and
    the evaluator's reference states equal what the node's own path makes of the same messages
    (the JointState rule, then the estimator): predicted, never learned from."""
    from invdyn_ros.offline.evaluation import as_stream, reference_states
    from invdyn_ros.pipeline.pipeline import PipelineConfig
    from invdyn_ros.stages.estimation import StreamingEstimator
    from invdyn_ros.stages.joint_state import JointStateRule

    n_samples = 400
    t = np.arange(n_samples) / 100.0
    q = np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.3 * t)], axis=1)
    tau = np.stack([3.0 * q[:, 0] + 1.0, -2.0 * q[:, 1]], axis=1)
    no_effort = np.zeros(n_samples, dtype=bool)
    no_effort[::4] = True
    no_effort[150:220] = True
    tau[no_effort] = np.nan
    rec = Recording(name='partly', joint_names=('a', 'b'), rate_hz=100.0, t=t, q=q, qd=None,
                    qdd=None, tau=tau)
    write_joint_states(tmp_path / 'bag', rec, start_time_ns=1_000_000_000)

    back = read_recording(tmp_path / 'bag')
    assert back.n_samples == n_samples and back.meta['effort_missing'] == int(no_effort.sum())
    np.testing.assert_array_equal(np.isnan(back.tau).all(axis=1), no_effort)

    cfg = PipelineConfig.from_params({'joint_names': ['a', 'b']}).filter
    ref = reference_states(as_stream(back), cfg)

    rule, est = JointStateRule(['a', 'b']), StreamingEstimator(2, cfg)
    valid, labeled = [], []
    X, labels = np.full((n_samples, 6), np.nan), np.full((n_samples, 2), np.nan)
    with BagReader(tmp_path / 'bag') as bag:
        for i, (_, msg) in enumerate(bag.messages('/joint_states')):
            stamp, qi, qdi, taui = rule(msg)
            s = est.update(stamp - 1.0, qi, qdi, taui)   # the bag's t = stamp - first stamp
            valid.append(s is not None)
            labeled.append(s is not None and s.tau is not None)
            if s is not None:
                X[i] = np.concatenate([s.q, s.qd, s.qdd])
                if s.tau is not None:
                    labels[i] = s.tau
    np.testing.assert_array_equal(ref.valid, valid)
    np.testing.assert_array_equal(ref.labeled, labeled)
    assert ref.counters == dict(est.counters)
    np.testing.assert_allclose(ref.X, X, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ref.tau, labels, rtol=1e-9, atol=1e-9)
    # the effortless messages are predicted (a state comes out) but never labels
    assert ref.valid[no_effort].sum() > 0.9 * no_effort.sum()
    assert not ref.labeled[no_effort].any()
