"""rosbag2 bags of ``sensor_msgs/msg/JointState``: write a :class:`Recording`, read it back, inspect.

Built on the pure-Python ``rosbags`` library (no ROS install needed), so recorded data can be
converted and evaluated offline and in CI. Both rosbag2 storage plugins are supported: ``sqlite3``
(``.db3``) and ``mcap``; on read the format is detected from the files (a bag directory with
``metadata.yaml``, or a single ``.db3`` / ``.mcap`` file).

Time: every message carries two times. ``header.stamp`` is when the driver sampled the joints and
is what the estimator differentiates with; the bag's *log time* is when the recorder received the
message and is what ``ros2 bag play`` (and :mod:`invdyn_ros.cli.invdyn_replay`) schedule by.
:func:`write_joint_states` sets both to ``start_time_ns + round(t * 1e9)``: by default the
recording's own time (a bag read back keeps its stamps), else :data:`DEFAULT_START_TIME_NS`, a
realistic epoch time -- never 0, which ROS reads as "no stamp" (the node rejects such messages).
Stamps are handled as integer nanoseconds throughout: a float of seconds since 1970 only resolves
~0.2 µs.

Format: rosbag2 metadata version 8 by default (:data:`DEFAULT_ROSBAG_VERSION`), which every
``ros2 bag`` from Humble on reads (Humble reads the QoS profiles of versions <= 8 as a YAML string;
version 9 writes them as a YAML list, which only Jazzy and newer parse); version 9 on request.

Every failure to open or parse a bag (missing path, not a bag, corrupt database, truncated MCAP,
missing topic, wrong message type) raises :class:`~invdyn_ros.errors.BagError` with the path.

Size: about 500 lines: reading, inspecting and writing share the typestore, the storage detection
and the error translation above.
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from invdyn_ros.errors import BagError, DatasetError
from invdyn_ros.offline.datasets import Recording

__all__ = [
    'BagInfo',
    'BagReader',
    'JOINT_STATE_TYPE',
    'JointStateSample',
    'JointStateStream',
    'DEFAULT_ROSBAG_VERSION',
    'DEFAULT_START_TIME_NS',
    'ROSBAG_VERSIONS',
    'STORAGES',
    'TopicSummary',
    'bag_info',
    'default_start_time_ns',
    'joint_state_typestore',
    'read_joint_states',
    'read_recording',
    'write_joint_states',
]

JOINT_STATE_TYPE = 'sensor_msgs/msg/JointState'
STORAGES = ('sqlite3', 'mcap')
_NS = 1_000_000_000
_INT32_MAX = 2**31 - 1
#: rosbag2 metadata versions the writer supports: 8 (read by Humble, Iron, Jazzy and newer) and 9
#: (Jazzy and newer only)
ROSBAG_VERSIONS = (8, 9)
DEFAULT_ROSBAG_VERSION = 8
#: header stamp of t = 0 for a recording without its own absolute time: 2023-11-14 22:13:20 UTC
DEFAULT_START_TIME_NS = 1_700_000_000 * _NS
#: a recording whose time axis starts later than this (2001-09-09) is already in epoch time
_EPOCH_TIME_MIN_S = 1e9


def joint_state_typestore() -> Any:
    """The rosbags typestore used to serialize messages: ROS 2 Kilted (else Jazzy, else latest).

    ``sensor_msgs/msg/JointState`` is identical in all of them; the bag embeds the definition, so
    readers of any distro can decode it.
    """
    from rosbags.typesys import Stores, get_typestore

    for name in ('ROS2_KILTED', 'ROS2_JAZZY', 'LATEST'):
        store = getattr(Stores, name, None)
        if store is not None:
            return get_typestore(store)
    raise BagError('rosbags has no ROS 2 typestore')  # pragma: no cover


class JointStateSample(NamedTuple):
    """One JointState message as arrays, fields exactly as stored (empty arrays for empty fields).

    ``stamp`` is ``header.stamp`` in seconds (float, for convenience); ``stamp_ns`` is the same
    stamp as exact integer nanoseconds; ``log_time_ns`` is the bag's receive time.
    """

    stamp: float
    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    stamp_ns: int
    log_time_ns: int
    frame_id: str = ''


@dataclass(frozen=True)
class TopicSummary:
    msgtype: str | None
    count: int


@dataclass(frozen=True)
class BagInfo:
    """What is in a bag: topics with types and message counts, time range (log times, ns)."""

    path: Path
    storage: str
    topics: dict[str, TopicSummary]
    message_count: int
    start_time_ns: int
    end_time_ns: int

    @property
    def duration_s(self) -> float:
        return max(0, self.end_time_ns - self.start_time_ns) / _NS if self.message_count else 0.0

    def summary(self) -> str:
        """A short multi-line description, like ``ros2 bag info``."""
        lines = [f'bag: {self.path} ({self.storage})',
                 f'messages: {self.message_count}, duration: {self.duration_s:.3f} s']
        for name, info in sorted(self.topics.items()):
            lines.append(f'  {name}  {info.msgtype}  {info.count} msgs')
        return '\n'.join(lines)


# ---------------------------------------------------------------------- reading
@contextmanager
def _errors_as_bag_error(path: Path, action: str) -> Iterator[None]:
    """Turn whatever rosbags / sqlite3 / the MCAP parser raise for a bad bag into a BagError.

    rosbags raises its own errors for malformed metadata but lets sqlite3.DatabaseError,
    struct.error, KeyError, AssertionError, ... escape for corrupt payloads; the caller only needs
    to know that this bag cannot be read and why.
    """
    try:
        yield
    except BagError:
        raise
    except FileNotFoundError as err:
        raise BagError(f'{path}: not a rosbag2 bag or missing ({err})') from None
    except Exception as err:  # noqa: BLE001 - boundary to an untrusted file
        raise BagError(f'{path}: cannot {action} ({type(err).__name__}: {err})') from None


def _storage_of(path: Path) -> str:
    files = [path] if path.is_file() else list(path.iterdir())
    suffixes = {s for f in files for s in f.suffixes}
    if '.mcap' in suffixes:
        return 'mcap'
    if '.db3' in suffixes:
        return 'sqlite3'
    return 'unknown'


def _reader_target(path: Path) -> Path:
    """The path rosbags should open: the bag folder, or its only storage file if metadata is lost."""
    if not path.exists():
        raise BagError(f'{path}: no such bag (file or directory)')
    if path.is_dir():
        if (path / 'metadata.yaml').is_file():
            return path
        files = [f for f in path.iterdir() if f.suffix in ('.db3', '.mcap')]
        if len(files) == 1:
            return files[0]
        raise BagError(f'{path}: not a rosbag2 bag (no metadata.yaml and '
                       f'{"no" if not files else "several"} .db3/.mcap files)')
    if path.suffix not in ('.db3', '.mcap'):
        raise BagError(f'{path}: not a rosbag2 bag (expected a bag folder, a .db3 or a .mcap file)')
    return path


class BagReader:
    """Context manager around rosbags' ``AnyReader`` that speaks JointState and raises BagError.

    >>> with BagReader('run1') as bag:
    ...     for sample in bag.joint_states('/joint_states'):
    ...         ...
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._target = _reader_target(self.path)
        self._reader: Any = None

    def open(self) -> 'BagReader':
        from rosbags.highlevel import AnyReader

        if self._reader is not None:
            return self
        with _errors_as_bag_error(self.path, 'open the bag'):
            reader = AnyReader([self._target], default_typestore=joint_state_typestore())
            reader.open()
        self._reader = reader
        return self

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # noqa: BLE001 - closing a corrupt bag must not mask the real error
                pass

    def __enter__(self) -> 'BagReader':
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_reader(self) -> Any:
        if self._reader is None:
            raise BagError(f'{self.path}: bag is not open')
        return self._reader

    @property
    def storage(self) -> str:
        return _storage_of(self._target)

    @property
    def topics(self) -> dict[str, TopicSummary]:
        reader = self._open_reader()
        with _errors_as_bag_error(self.path, 'read the topic list'):
            return {name: TopicSummary(info.msgtype, int(info.msgcount))
                    for name, info in reader.topics.items()}

    def info(self) -> BagInfo:
        reader = self._open_reader()
        with _errors_as_bag_error(self.path, 'read the bag metadata'):
            count = int(reader.message_count)
            start = int(reader.start_time) if count else 0
            end = int(reader.end_time) if count else 0
        return BagInfo(path=self.path, storage=self.storage, topics=self.topics,
                       message_count=count, start_time_ns=start, end_time_ns=end)

    def _connections(self, topic: str, msgtype: str | None = JOINT_STATE_TYPE) -> list[Any]:
        reader = self._open_reader()
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            available = ', '.join(f'{t} [{s.msgtype}]' for t, s in sorted(self.topics.items()))
            raise BagError(f'{self.path}: no topic {topic!r} in the bag; topics: {available or "none"}')
        if msgtype is not None:
            wrong = {c.msgtype for c in conns if c.msgtype != msgtype}
            if wrong:
                raise BagError(f'{self.path}: topic {topic!r} has type {sorted(wrong)}, expected {msgtype}')
        return conns

    def count(self, topic: str) -> int:
        """Messages on ``topic`` according to the bag's index (BagError if the topic is absent)."""
        return int(sum(c.msgcount for c in self._connections(topic, msgtype=None)))

    def messages(self, topic: str, msgtype: str | None = None) -> Iterator[tuple[int, Any]]:
        """``(log_time_ns, deserialized message)`` on ``topic`` in log-time order."""
        reader = self._open_reader()
        conns = self._connections(topic, msgtype)
        with _errors_as_bag_error(self.path, f'read messages of {topic!r}'):
            for conn, log_ns, raw in reader.messages(connections=conns):
                yield int(log_ns), reader.deserialize(raw, conn.msgtype)

    def joint_states(self, topic: str = '/joint_states') -> Iterator[JointStateSample]:
        """The JointState messages on ``topic`` as :class:`JointStateSample` (log-time order)."""
        for log_ns, msg in self.messages(topic, JOINT_STATE_TYPE):
            with _errors_as_bag_error(self.path, f'decode a JointState of {topic!r}'):
                stamp_ns = int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)
                yield JointStateSample(
                    stamp=stamp_ns / _NS,
                    names=tuple(str(n) for n in msg.name),
                    position=np.array(msg.position, dtype=np.float64),
                    velocity=np.array(msg.velocity, dtype=np.float64),
                    effort=np.array(msg.effort, dtype=np.float64),
                    stamp_ns=stamp_ns,
                    log_time_ns=log_ns,
                    frame_id=str(msg.header.frame_id),
                )


class JointStateStream:
    """The JointState messages of one topic of a bag; iterable any number of times.

    Created by :func:`read_joint_states`, which checks up front that the bag opens and holds the
    topic with the right type, so a bad bag fails at the call, not at the first ``next()``.
    Each iteration opens the bag, reads it in log-time order and closes it again.
    """

    def __init__(self, path: str | Path, topic: str = '/joint_states') -> None:
        self.path = Path(path).expanduser()
        self.topic = topic
        with BagReader(self.path) as bag:
            bag._connections(topic, JOINT_STATE_TYPE)
            self._count = bag.count(topic)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[JointStateSample]:
        with BagReader(self.path) as bag:
            yield from bag.joint_states(self.topic)


def read_joint_states(path: str | Path, topic: str = '/joint_states') -> JointStateStream:
    """Iterate the JointState messages of ``topic``: :class:`JointStateSample` per message.

    Values come straight from the messages (no reordering, no validation): use
    :func:`read_recording` for joint-ordered, validated arrays.
    """
    return JointStateStream(path, topic)


def bag_info(path: str | Path) -> BagInfo:
    """Topics, message types and counts, total count and time range of a bag."""
    with BagReader(path) as bag:
        return bag.info()


def read_recording(path: str | Path, topic: str = '/joint_states',
                   joints: Sequence[str] | None = None, name: str | None = None,
                   rate_hz: float | None = None, segment_gap_s: float = 0.5) -> Recording:
    """A bag's JointStates as a :class:`Recording`, each message judged by the node's own rule
    (:class:`invdyn_ros.stages.joint_state.JointStateRule`), so an evaluation treats it as the node
    does.

    - ``joints``: the joint order (default: the names of the first usable message). Messages may
      list joints in any order and list extra joints (ignored). A message the rule rejects
      (a joint missing, duplicate names, mismatched array lengths, a zero stamp, NaN/Inf in the
      used positions or efforts) or with a header stamp not after the previous accepted one is
      skipped and counted in ``rec.meta['skipped']`` (a dict: the rule's
      :class:`~invdyn_ros.stages.joint_state.Rejection` values and ``stamp_not_increasing`` ->
      count).
    - Effort: a message without one is kept, as the node keeps it (predicted, not learned from):
      its ``tau`` row is NaN (``rec.meta['effort_missing']`` counts them); an evaluation never
      learns from or scores such a row.
    - Velocity, decided per message as the live node does: ``qd`` has a NaN row for a message
      without velocity and NaN entries where a velocity is NaN/Inf (the message is kept; the
      estimator differentiates positions there); ``qd`` is None only when no accepted message has
      any. ``rec.meta['velocity_missing']`` / ``['velocity_nonfinite']`` count those messages.
    - Time: ``t`` is the header stamp relative to the first accepted one (seconds, float64;
      ``rec.meta['start_time_ns']`` is the absolute first stamp). A stamp difference above
      ``segment_gap_s`` starts a new segment. ``rate_hz`` defaults to 1 / median stamp difference.
    """
    from invdyn_ros.stages.joint_state import JointStateRule, Rejection

    path = Path(path).expanduser()
    rule = JointStateRule(joints) if joints is not None else None
    skipped = {**{r.value: 0 for r in Rejection}, 'stamp_not_increasing': 0}
    stamps: list[int] = []
    qs: list[np.ndarray] = []
    qds: list[np.ndarray | None] = []
    taus: list[np.ndarray | None] = []
    total = 0
    with BagReader(path) as bag:
        for _, msg in bag.messages(topic, JOINT_STATE_TYPE):
            total += 1
            judge = rule
            if judge is None:                 # joints from the first message the rule accepts
                names = [str(n) for n in msg.name]
                if not names:
                    skipped[Rejection.MISSING_JOINT.value] += 1
                    continue
                judge = JointStateRule(names)
            with _errors_as_bag_error(path, f'decode a JointState of {topic!r}'):
                sample = judge(msg)
            if isinstance(sample, Rejection):
                skipped[sample.value] += 1
                continue
            rule = judge
            stamp_ns = int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)
            if stamps and stamp_ns <= stamps[-1]:
                skipped['stamp_not_increasing'] += 1
                continue
            _, q, qd, tau = sample
            stamps.append(stamp_ns)
            qs.append(q)
            qds.append(qd)
            taus.append(tau)
    wanted = rule.joint_names if rule is not None else ()
    if not stamps:
        raise BagError(f'{path}: no usable JointState samples on {topic!r} '
                       f'({total} messages; skipped: {_nonzero(skipped)})')
    ns = np.asarray(stamps, dtype=np.int64)
    t = (ns - ns[0]).astype(np.float64) / _NS
    dt = np.diff(t)
    breaks = np.flatnonzero(dt > segment_gap_s) + 1
    bounds = [0, *breaks.tolist(), len(t)]
    segments = tuple(zip(bounds[:-1], bounds[1:]))
    if rate_hz is None:
        inner = dt[dt <= segment_gap_s]
        if inner.size == 0:
            raise BagError(f'{path}: cannot infer the sample rate of {topic!r} from '
                           f'{len(t)} sample(s); pass rate_hz')
        rate_hz = 1.0 / float(np.median(inner))
    effort_missing = sum(1 for v in taus if v is None)
    tau = np.stack([np.full(len(wanted), np.nan) if v is None else v for v in taus])
    velocity_missing = sum(1 for v in qds if v is None)
    velocity_nonfinite = sum(1 for v in qds if v is not None and not np.all(np.isfinite(v)))
    qd = None
    if velocity_missing < len(qds):          # unknown velocities as NaN, like the node sees them
        qd = np.stack([np.full(len(wanted), np.nan) if v is None
                       else np.where(np.isfinite(v), v, np.nan) for v in qds])
    try:
        return Recording(
            name=name or path.name, joint_names=wanted, rate_hz=rate_hz, t=t, q=np.stack(qs),
            qd=qd, qdd=None, tau=tau, segments=segments,
            meta={'source': str(path), 'topic': topic, 'start_time_ns': int(ns[0]),
                  'messages': total, 'skipped': skipped, 'velocity_missing': velocity_missing,
                  'velocity_nonfinite': velocity_nonfinite, 'effort_missing': effort_missing})
    except DatasetError as err:
        raise BagError(f'{path}: {err}') from None


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v} or {}


# ---------------------------------------------------------------------- writing
def default_start_time_ns(recording: Recording) -> int:
    """The header stamp of ``t = 0`` when none is given: the recording's own time if it has one.

    - a recording read from a bag: its first stamp (``meta['start_time_ns']``), so a bag written
      back keeps the original stamps;
    - a time axis already in epoch seconds (e.g. a CSV ``time`` column of ROS stamps): 0;
    - otherwise (datasets with t from 0): :data:`DEFAULT_START_TIME_NS`.
    """
    own = recording.meta.get('start_time_ns')
    if isinstance(own, (int, np.integer)) and not isinstance(own, bool) and own > 0:
        return int(own)
    if len(recording.t) and float(recording.t[0]) >= _EPOCH_TIME_MIN_S:
        return 0
    return DEFAULT_START_TIME_NS


def write_joint_states(path: str | Path, recording: Recording, topic: str = '/joint_states',
                       storage: str = 'sqlite3', start_time_ns: int | None = None,
                       frame_id: str = '', version: int = DEFAULT_ROSBAG_VERSION) -> BagInfo:
    """Write ``recording`` as a new rosbag2 bag, one ``sensor_msgs/msg/JointState`` per sample.

    ``header.stamp`` and the log time are ``start_time_ns + round(t * 1e9)``; ``name`` is
    ``joint_names``; ``position`` q, ``velocity`` qd (empty when the recording has none), ``effort``
    tau (empty for a NaN row: a sample without effort). ``start_time_ns`` None: :func:`default_start_time_ns`. A first stamp of 0 is refused (ROS
    reads it as unset). ``storage`` is ``'sqlite3'`` or ``'mcap'``; ``version`` the rosbag2 format
    version, one of :data:`ROSBAG_VERSIONS` (8: readable by Humble and newer; 9: Jazzy and newer).
    ``path`` must not exist; a partly written bag is removed on error. Returns its :class:`BagInfo`.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = Path(path).expanduser()
    if storage not in STORAGES:
        raise BagError(f'storage must be one of {STORAGES}, got {storage!r}')
    if not isinstance(topic, str) or not topic or any(c.isspace() for c in topic):
        raise BagError(f'invalid topic name {topic!r}')
    if version not in ROSBAG_VERSIONS:
        raise BagError(f'rosbag2 version must be one of {ROSBAG_VERSIONS}, got {version!r}')
    if path.exists():
        raise BagError(f'{path}: exists already; not overwriting')
    start_time_ns = default_start_time_ns(recording) if start_time_ns is None else int(start_time_ns)
    if start_time_ns < 0:
        raise BagError(f'start_time_ns must be >= 0, got {start_time_ns}')
    stamps = start_time_ns + np.rint(recording.t * _NS).astype(np.int64)
    if stamps[0] <= 0:
        raise BagError(f'{recording.name}: first stamp {stamps[0]} ns is not positive (ROS reads a '
                       f'zero header.stamp as unset); raise start_time_ns')
    if stamps[-1] // _NS > _INT32_MAX:
        raise BagError(f'{recording.name}: stamps beyond builtin_interfaces/Time (int32 seconds)')
    if len(stamps) > 1 and not np.all(np.diff(stamps) > 0):
        raise BagError(f'{recording.name}: stamps collide after rounding to nanoseconds')

    typestore = joint_state_typestore()
    JointState = typestore.types[JOINT_STATE_TYPE]
    Header = typestore.types['std_msgs/msg/Header']
    Time = typestore.types['builtin_interfaces/msg/Time']
    names = list(recording.joint_names)
    empty = np.zeros(0, dtype=np.float64)
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    created = False
    try:
        writer = Writer(path, version=version, storage_plugin=plugin)
        writer.open()
        created = True
        try:
            conn = writer.add_connection(topic, JOINT_STATE_TYPE, typestore=typestore)
            for k, ns in enumerate(stamps.tolist()):
                msg = JointState(
                    header=Header(stamp=Time(sec=ns // _NS, nanosec=ns % _NS), frame_id=frame_id),
                    name=names,
                    position=np.ascontiguousarray(recording.q[k]),
                    velocity=(np.ascontiguousarray(recording.qd[k]) if recording.qd is not None
                              and not np.isnan(recording.qd[k]).all() else empty),
                    effort=(empty if np.isnan(recording.tau[k]).all()
                            else np.ascontiguousarray(recording.tau[k])),
                )
                writer.write(conn, ns, typestore.serialize_cdr(msg, JOINT_STATE_TYPE))
        finally:
            writer.close()
    except BagError:
        raise
    except Exception as err:  # noqa: BLE001 - disk full, permissions, ...: remove our partial bag
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise BagError(f'{path}: cannot write the bag ({type(err).__name__}: {err})') from None
    return bag_info(path)
