"""The ``invdyn_node`` process around the node: command line (``--help``), rclpy
initialisation, SIGINT / SIGTERM (a stop flag, then the lifecycle shutdown), the executor loop
with Python's garbage collection moved between callbacks, and the exit code (2 = invalid
parameters or a checkpoint that does not fit, 1 = an error, 0 = a stop). The node class itself
is :class:`invdyn_ros.ros.node.InvdynNode` (``invdyn_ros.ros.node:main`` is the entry point).
"""
from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from typing import Any

from invdyn_ros.errors import CheckpointError, ConfigError, InvdynError
from invdyn_ros.pipeline.parameters import help_lines
from invdyn_ros.ros.node_settings import ros_args_error
from invdyn_ros.stopflag import StopFlag

_GC_THRESHOLDS = gc.get_threshold()
#: How long (s) a thread that wants the GIL waits before the holder must give it up (Python's
#: default 5 ms). The control thread shares the GIL with the trajectory relay's thread, whose
#: annotation holds it for ~10 ms of Python per 1000 points: at 0.2 ms a joint state that arrives
#: meanwhile waits at most about that long instead of 5 ms.
GIL_SWITCH_INTERVAL_S = 2e-4


def collect_garbage_off_path() -> None:
    """Python's automatic garbage collection policy, run at a moment of our choosing.

    With ``gc.disable()`` allocations still count (``gc.get_count``); this runs the collection
    the interpreter would have run by now (generation 0 after ``threshold0`` net allocations,
    older generations every ``threshold1`` / ``threshold2`` younger collections), so memory stays
    bounded as usual, but a collection never lands between a message's arrival and its
    prediction being published. Costs ~0.2 µs when there is nothing to do."""
    c0, c1, c2 = gc.get_count()
    t0, t1, t2 = _GC_THRESHOLDS
    if c0 <= t0:
        return
    gen = 2 if (c1 > t1 and c2 > t2) else 1 if c1 > t1 else 0
    gc.collect(gen)


def build_arg_parser() -> argparse.ArgumentParser:
    lines = help_lines()
    return argparse.ArgumentParser(
        prog='invdyn_node',
        description='Learns the inverse dynamics of a robot arm online from /joint_states and '
                    'publishes predicted and feedforward torques.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Run: invdyn_node --ros-args --params-file config/kuka_lwr.yaml\n\n'
               'ROS parameters (params file under "invdyn_node: ros__parameters:", or '
               '--ros-args -p name:=value):\n' + '\n'.join(lines))


def make_executor(kind: str, context: Any = None) -> Any:
    """rclpy's EventsExecutor (much less overhead per message) or SingleThreadedExecutor."""
    if kind == 'events':
        try:
            from rclpy.experimental import EventsExecutor
            return EventsExecutor(context=context)
        except ImportError:
            pass
    from rclpy.executors import SingleThreadedExecutor
    return SingleThreadedExecutor(context=context)


def main(argv: list[str] | None, node_class: Any) -> int:
    """Runs ``node_class`` (:class:`~invdyn_ros.ros.node.InvdynNode`) as the process; returns the
    exit code (2 = invalid parameters or a checkpoint that does not fit).

    Run as the program (``argv`` None), the process leaves with ``os._exit`` once everything is
    closed (final checkpoint written, trainer stopped, rclpy shut down, output flushed): the
    interpreter's teardown of torch, numba and rclpy would add ~0.5 s of CPU to every stop,
    seconds on a loaded machine, past launch's SIGTERM -> SIGKILL escalation."""
    code = _run(argv, node_class)
    if argv is None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        release_multiprocessing()
        try:   # C stdio too (rcutils' console logging): os._exit skips its flush
            import ctypes
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
        os._exit(code)
    return code


def release_multiprocessing() -> None:
    """What multiprocessing does at a normal interpreter exit and ``os._exit`` skips: its
    finalizers of exit priority >= 0, among them the unlinking of the named semaphores of the
    trainer's queues (3 per queue). Skipped, the resource tracker unlinks them after the process
    is gone and warns "There appear to be 12 leaked semaphore objects to clean up at shutdown"
    on every stop. The finalizers of lower priority (joining queue feeder threads, which could
    block on a pipe whose reader is gone) are not run. Nothing to do when multiprocessing was
    never imported, or where its private ``_run_finalizers`` does not exist (then the warning
    stays: cosmetic, the tracker still unlinks)."""
    util = sys.modules.get('multiprocessing.util')
    run_finalizers = getattr(util, '_run_finalizers', None)
    if run_finalizers is not None:
        run_finalizers(0)


def _run(argv: list[str] | None, node_class: Any) -> int:
    argv = list(sys.argv if argv is None else argv)
    import rclpy
    from rclpy.impl.implementation_singleton import rclpy_implementation
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    try:
        plain_args = remove_ros_args(argv)
    except rclpy_implementation.RCLInvalidROSArgsError as exc:
        print(f'[invdyn_node] invalid parameter: {ros_args_error(str(exc))}', file=sys.stderr)
        return 2
    build_arg_parser().parse_args(plain_args[1:])
    import torch
    torch.set_num_threads(1)       # the control loop needs one core, not a torch thread pool

    try:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except rclpy_implementation.RCLInvalidROSArgsError as exc:
        print(f'[invdyn_node] invalid parameter: {ros_args_error(str(exc))}', file=sys.stderr)
        return 2
    stop = StopFlag()      # not threading.Event: its set() takes a lock (see stopflag)

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node = None
    try:
        try:
            node = node_class(abort=stop)
        except ConfigError as exc:
            print(f'[invdyn_node] invalid parameter: {exc}', file=sys.stderr)
            return 2
        except CheckpointError as exc:       # does not fit / corrupt: refused, left untouched
            print(f'[invdyn_node] checkpoint refused: {exc}', file=sys.stderr)
            return 2
        except InvdynError as exc:
            if stop.is_set():                # SIGINT/SIGTERM while starting: a normal stop
                print('[invdyn_node] stopped during start-up', file=sys.stderr)
                return 0
            print(f'[invdyn_node] error: {exc}', file=sys.stderr)
            return 1
        executor = make_executor(node.executor_kind)
        executor.add_node(node)
        node.apply_realtime_priority()        # this thread spins: the callbacks run on it
        errors: list[BaseException] = []
        # Everything allocated so far (torch, messages, buffers) lives for the whole run: keep it
        # out of the garbage collector's generations, so a collection on the message path only
        # scans what the loop itself allocates (shorter, rarer pauses: the p99 latency).
        gc.collect()
        gc.freeze()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        # ... and collect only where it cannot delay a prediction: automatic collection is off,
        # the loop below collects between callbacks (collect_garbage_off_path).
        gc.disable()
        # The main thread spins with spin_once rather than spin(): EventsExecutor.spin() of this
        # rclpy (Kilted wheels) never fired timers and could not be shut down in our tests, and
        # between two spin_once calls Python runs the signal handler that sets `stop`.
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
                collect_garbage_off_path()       # between callbacks, never inside one
        except BaseException as exc:  # noqa: BLE001 - reported below, after the clean shutdown
            if rclpy.ok():
                errors.append(exc)
        executor.shutdown()
        node.close()
        if errors:
            print(f'[invdyn_node] executor failed: {errors[0]!r}', file=sys.stderr)
            return 1
        return 0
    finally:
        if node is not None:
            try:
                node.close()
            finally:
                node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
