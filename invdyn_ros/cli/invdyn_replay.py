"""invdyn_replay: publish a bag's JointState messages live, with the original timing.

    invdyn_replay BAG [--topic /joint_states] [--remap-topic NAME] [--rate 1.0] [--loop]
                  [--loops N] [--restamp] [--wait-for-subscribers N] [--wait-timeout S]
                  [--ros-args ...]

A ROS 2 node (``invdyn_replay``) that feeds the live invdyn node exactly what the arm sent:

- Timing: message k is sent at ``start + (log_k - log_0) / rate`` on the monotonic clock, where
  ``log`` is the bag's receive time (what ``ros2 bag play`` uses too). Every send time is computed
  from the start, never from the previous send, so sleeping late never accumulates into drift; a
  message that is already due is sent at once.
- Stamps: ``header.stamp`` is kept as recorded by default (the estimator differentiates with the
  driver's stamps, so keeping them reproduces the recording exactly). ``--restamp`` writes the
  node's current ROS time instead (the time of the first send plus the planned offset, so the
  spacing stays exact under scheduling jitter; with ``--rate`` != 1 the spacing is scaled too).
- Loops: ``--loop`` replays forever, ``--loops N`` N passes. The live node drops stamps that go
  backwards, so a loop without ``--restamp`` shifts the stamps of each pass by a continuous
  offset (the span of the bag plus one sample period per pass) so they keep increasing; this is
  announced on stdout. Pass p+1 is sent one sample period after pass p ends.
- Published on ``--remap-topic`` (default ``/joint_states``), reliable, keep-last 100.
- Ctrl-C (SIGINT) or SIGTERM stops cleanly with exit status 0; a missing or unreadable bag, a
  missing topic, or bad options exit with status 2 and one line on stderr.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from invdyn_ros.errors import BagError
from invdyn_ros.offline.bag import JointStateSample, read_joint_states
from invdyn_ros.stopflag import StopFlag

EXIT_OK, EXIT_USAGE = 0, 2
_NS = 1_000_000_000
_PERIOD_SAMPLES = 1000  # stamp differences used to estimate the sample period of a pass


@dataclass(frozen=True)
class Scheduled:
    """One message of the replay plan.

    ``due_s``: send time in seconds after the replay started (already divided by the rate);
    ``stamp_ns``: the header stamp to publish unless restamping to the current time;
    ``pass_index``: 0-based loop pass.
    """

    due_s: float
    stamp_ns: int
    sample: JointStateSample
    pass_index: int


def _period_ns(diffs: list[int]) -> int:
    positive = [d for d in diffs if d > 0]
    return int(np.median(positive)) if positive else 1


def replay_schedule(samples: Iterable[JointStateSample], rate: float = 1.0,
                    loops: int | None = 1, shift_stamps: bool = False) -> Iterator[Scheduled]:
    """The replay plan: when to send each message and with which stamp (pure, no ROS, no sleeping).

    ``samples`` is iterated once per pass (a :class:`~invdyn_ros.offline.bag.JointStateStream`
    re-reads the bag). ``loops``: number of passes, None = forever. Pass p+1 starts one sample
    period (median log-time difference) after pass p's last message; with ``shift_stamps`` its
    header stamps are shifted by the same continuous offset measured on the header stamps, so stamps
    keep increasing across passes.
    """
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f'rate must be positive and finite, got {rate}')
    wall_offset_ns = 0   # bag time (log clock) at which the current pass starts, from replay start
    stamp_offset_ns = 0  # added to header stamps in this pass
    for p in count():
        if loops is not None and p >= loops:
            return
        first_log = last_log = first_stamp = last_stamp = None
        log_diffs: list[int] = []
        stamp_diffs: list[int] = []
        for s in samples:
            if first_log is None:
                first_log, first_stamp = s.log_time_ns, s.stamp_ns
            else:
                if len(log_diffs) < _PERIOD_SAMPLES:
                    log_diffs.append(s.log_time_ns - last_log)
                    stamp_diffs.append(s.stamp_ns - last_stamp)
            last_log, last_stamp = s.log_time_ns, s.stamp_ns
            due_ns = wall_offset_ns + (s.log_time_ns - first_log)
            yield Scheduled(due_s=due_ns / _NS / rate,
                            stamp_ns=s.stamp_ns + (stamp_offset_ns if shift_stamps else 0),
                            sample=s, pass_index=p)
        if first_log is None:  # empty pass: nothing will ever come
            return
        wall_offset_ns += (last_log - first_log) + _period_ns(log_diffs)
        stamp_offset_ns += (last_stamp - first_stamp) + _period_ns(stamp_diffs)


@dataclass
class ReplayStats:
    published: int = 0
    passes: int = 0
    late: int = 0          # messages sent more than 10 ms after their due time
    max_lag_s: float = 0.0
    interrupted: bool = False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='invdyn_replay',
        description='Publish the JointState messages of a rosbag2 bag with their original timing.')
    p.add_argument('bag', help='rosbag2 bag directory (sqlite3 or mcap), or a .db3/.mcap file')
    p.add_argument('--topic', default='/joint_states', help='topic to read from the bag')
    p.add_argument('--remap-topic', default=None, metavar='NAME',
                   help='topic to publish on (default: /joint_states)')
    p.add_argument('--rate', type=float, default=1.0, help='playback speed factor (2 = twice as fast)')
    p.add_argument('--loop', action='store_true',
                   help='replay forever; stamps keep increasing (see --restamp)')
    p.add_argument('--loops', type=int, default=None, metavar='N',
                   help='number of passes (implies --loop when > 1)')
    p.add_argument('--restamp', action='store_true',
                   help='set header.stamp to the current ROS time instead of the recorded stamp')
    p.add_argument('--wait-for-subscribers', type=int, default=0, metavar='N',
                   help='wait until N subscribers are matched before starting')
    p.add_argument('--wait-timeout', type=float, default=10.0, metavar='S',
                   help='give up waiting for subscribers after S seconds and start anyway')
    p.add_argument('--progress-period', type=float, default=5.0, metavar='S',
                   help='print progress every S seconds (0 = only at the end)')
    return p


class Restamper:
    """Header stamps in the node's ROS time for ``--restamp``.

    Message k gets ``T0 + due_k`` where T0 is the ROS time when the first message goes out: the
    current time up to scheduling jitter, but with exactly the planned spacing. Stamping with
    ``now()`` at the send instead would turn every late wake-up (a loaded CPU) into a short and a
    long interval, i.e. velocity spikes in the estimator.
    """

    def __init__(self, now_ns: Callable[[], int]) -> None:
        self._now_ns = now_ns
        self._t0_ns: int | None = None

    def __call__(self, item: Scheduled) -> int:
        due_ns = int(round(item.due_s * _NS))
        if self._t0_ns is None:
            self._t0_ns = self._now_ns() - due_ns
        return self._t0_ns + due_ns


def _to_msg(JointState: Any, scheduled: Scheduled, stamp_ns: int) -> Any:
    s = scheduled.sample
    msg = JointState()
    msg.header.stamp.sec = int(stamp_ns // _NS)
    msg.header.stamp.nanosec = int(stamp_ns % _NS)
    msg.header.frame_id = s.frame_id
    msg.name = list(s.names)
    msg.position = s.position.tolist()
    msg.velocity = s.velocity.tolist()
    msg.effort = s.effort.tolist()
    return msg


def replay(plan: Iterable[Scheduled], publish: Callable[[Scheduled], None],
           stop: 'StopFlag | threading.Event', total: int | None = None,
           progress_period_s: float = 5.0, out: Callable[[str], None] = print,
           clock: Callable[[], float] = time.monotonic) -> ReplayStats:
    """Send each planned message at ``start + due_s`` (monotonic clock) until done or ``stop``.

    ``start`` is taken when the first item arrives (opening the bag takes ~0.1 s and must not
    make the first messages late).

    ``publish`` is called with the :class:`Scheduled` item; waits use ``stop.wait`` so another
    thread (or a signal handler) can end the replay promptly.
    """
    stats = ReplayStats()
    start: float | None = None
    next_progress = math.inf
    in_pass = 0
    for item in plan:
        if start is None:  # the clock starts at the first message, after the bag has opened
            start = clock() - item.due_s
            next_progress = start + progress_period_s if progress_period_s > 0 else math.inf
        remaining = start + item.due_s - clock()
        if remaining > 0 and stop.wait(remaining):
            break
        if stop.is_set():
            break
        lag = clock() - (start + item.due_s)
        if lag > 0.01:
            stats.late += 1
        stats.max_lag_s = max(stats.max_lag_s, lag)
        publish(item)
        in_pass = in_pass + 1 if item.pass_index + 1 == stats.passes else 1
        stats.published += 1
        stats.passes = item.pass_index + 1
        now = clock()
        if now >= next_progress:
            out(f'invdyn_replay: pass {stats.passes}: {in_pass}{f"/{total}" if total else ""} '
                f'messages ({stats.published} in all), {now - start:.1f} s')
            next_progress = now + progress_period_s
    stats.interrupted = stop.is_set()
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from rclpy.utilities import remove_ros_args
        user_argv = remove_ros_args(['invdyn_replay', *argv])[1:]
    except ImportError:  # pragma: no cover - rclpy missing: let argparse report usage errors
        user_argv = [a for a in argv]
    parser = build_parser()
    try:
        args = parser.parse_args(user_argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE

    def fail(message: str) -> int:
        print(f'invdyn_replay: error: {message}', file=sys.stderr)
        return EXIT_USAGE

    if not (args.rate > 0 and math.isfinite(args.rate)):
        return fail(f'--rate must be positive and finite, got {args.rate}')
    if args.loops is not None and args.loops < 1:
        return fail(f'--loops must be >= 1, got {args.loops}')
    loops = None if args.loop and args.loops is None else (args.loops or 1)
    looping = loops is None or loops > 1
    try:
        stream = read_joint_states(Path(args.bag), args.topic)
    except BagError as err:
        return fail(str(err))
    if len(stream) == 0:
        return fail(f'{args.bag}: no messages on {args.topic!r}')
    out_topic = args.remap_topic or '/joint_states'

    import rclpy
    from rclpy.context import Context
    from rclpy.duration import Duration
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import JointState

    stop = StopFlag()      # set by signal handlers: never threading.Event (see stopflag)
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        def _on_signal(signum: int, frame: object) -> None:
            stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[sig] = signal.signal(sig, _on_signal)

    # Own context, no rclpy signal handlers: main() can run beside other nodes in one process
    # (tests) and Ctrl-C is handled above by ending the replay loop.
    context = Context()
    rclpy.init(args=['invdyn_replay', *argv], context=context,
               signal_handler_options=SignalHandlerOptions.NO)
    node = None
    stats = ReplayStats()
    try:
        node = rclpy.create_node('invdyn_replay', context=context)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                         reliability=ReliabilityPolicy.RELIABLE)
        publisher = node.create_publisher(JointState, out_topic, qos)
        clock = node.get_clock()
        if args.wait_for_subscribers > 0:
            deadline = time.monotonic() + max(0.0, args.wait_timeout)
            while (publisher.get_subscription_count() < args.wait_for_subscribers
                   and time.monotonic() < deadline and not stop.is_set()):
                stop.wait(0.02)
        restamp = args.restamp
        shift = looping and not restamp
        print(f'invdyn_replay: {len(stream)} messages from {args.bag} [{args.topic}] -> '
              f'{publisher.topic_name} at rate x{args.rate:g}'
              + (', forever' if loops is None else f', {loops} passes' if loops > 1 else '')
              + (', stamps = current ROS time' if restamp else
                 ', stamps shifted by the loop offset each pass so they keep increasing' if shift
                 else ', original stamps'), flush=True)
        restamper = Restamper(lambda: clock.now().nanoseconds) if restamp else None

        def publish(item: Scheduled) -> None:
            stamp_ns = restamper(item) if restamper is not None else item.stamp_ns
            publisher.publish(_to_msg(JointState, item, stamp_ns))

        plan = replay_schedule(stream, rate=args.rate, loops=loops, shift_stamps=shift)
        stats = replay(plan, publish,
                       stop, total=len(stream), progress_period_s=args.progress_period,
                       out=lambda line: print(line, flush=True))
        publisher.wait_for_all_acked(Duration(seconds=2.0))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown, or SIGINT before the handler
        stats.interrupted = True
    except BagError as err:  # the bag went bad while reading (e.g. truncated after the check)
        print(f'invdyn_replay: error: {err}', file=sys.stderr)
        return EXIT_USAGE
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    print(f'invdyn_replay: {"interrupted, " if stats.interrupted else ""}published '
          f'{stats.published} messages in {stats.passes} pass(es); late (>10 ms): {stats.late}, '
          f'max lag {stats.max_lag_s * 1e3:.1f} ms', flush=True)
    return EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
