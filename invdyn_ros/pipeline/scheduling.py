"""Thread scheduling: the control thread and what it depends on under SCHED_FIFO, background
work beside it under normal scheduling; imports nothing but ``os`` and ``re``. ``log`` is any
logger with ``info`` and ``warning`` (the node passes its rclpy logger).

- :func:`realtime_priority`: the thread that spins the executor under SCHED_FIFO
  (``realtime_priority``), like ros2_control's control loop.
- :func:`raise_receive_threads`: the middleware threads that hand that thread its messages, at
  the same priority. A message reaches the control thread through the middleware's receive thread
  (Fast DDS: one per transport port, named ``dds.shm.<port>`` / ``dds.udp.<port>`` /
  ``dds.tcp.<port>``; Cyclone DDS: ``recv``, ``recvUC``, ``recvMC``). Left at normal scheduling,
  that thread waits behind the trainer and every other process for a core, and the control
  thread, however high its priority, has nothing to work on meanwhile: in the demo on a busy
  2-core machine the node went ~100 ms without a message while the simulator kept sending them
  (README, "Held feedforward in the demo"). The middleware's own way to set these threads is its
  configuration (Fast DDS XML profiles: ``thread_settings`` of the transports), which this does not
  replace: it raises the threads that the name pattern finds, once, when the control thread's
  priority is set (threads the middleware starts later keep what they get).
- :func:`normal_scheduling`: a thread inherits its creator's policy, so a helper thread that the
  control thread starts for background work (the pipeline's checkpoint writer, the trajectory
  relay) would compete with the very loop it should stay behind; such a thread calls this first.

It lives here, apart from the pipeline's torch modules, so that ``ros.trajectory_msgs_io`` (the
relay) imports it at module level and still loads no torch: the demo's controller imports that
module in a process without.
"""
from __future__ import annotations

import os
import re
from typing import Any

__all__ = ['normal_scheduling', 'realtime_priority', 'RECEIVE_THREAD_PATTERN', 'receive_threads',
           'raise_receive_threads']

#: The names of the middleware threads that receive messages (Fast DDS transports, Cyclone DDS);
#: not Fast DDS's shared-memory watchdog ``dds.shm.wdog`` nor its event / async threads.
RECEIVE_THREAD_PATTERN = re.compile(r'dds\.(shm|udp|tcp)\.\d+|recv(UC|MC)?')


def normal_scheduling() -> None:
    """Run the calling thread under normal scheduling (SCHED_OTHER). A helper thread started by
    a SCHED_FIFO control thread (the node's ``realtime_priority``) inherits SCHED_FIFO; one that
    does background work calls this first. No-op where it is already normal or not supported."""
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def realtime_priority(prio: int, log: Any) -> tuple[bool, str]:
    """(in effect, scheduling): put the calling thread under SCHED_FIFO at ``prio`` (0: normal
    scheduling, nothing done), like ros2_control's control loop: a waking callback then
    preempts the trainer, a benchmark's publisher and any other normal process at once.
    Refused (no CAP_SYS_NICE / rtprio limit, not Linux): a warning, and normal scheduling."""
    if prio == 0:
        return False, 'normal'
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
    except (AttributeError, OSError) as exc:
        log.warning(f'realtime_priority {prio}: SCHED_FIFO refused ({exc}); running with normal '
                    'scheduling. Grant it with CAP_SYS_NICE or an rtprio limit '
                    '(/etc/security/limits.conf: <user> - rtprio 99).')
        return False, f'normal (SCHED_FIFO {prio} refused)'
    scheduling = f'SCHED_FIFO {prio}'
    log.info(f'control loop thread runs under {scheduling}')
    return True, scheduling


def receive_threads(task_dir: str = '/proc/self/task') -> dict[int, str]:
    """``{thread id: name}`` of this process's middleware receive threads
    (:data:`RECEIVE_THREAD_PATTERN`); empty where ``/proc`` cannot tell."""
    found: dict[int, str] = {}
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return found
    for tid in tids:
        try:
            with open(os.path.join(task_dir, tid, 'comm')) as f:
                name = f.read().strip()
        except OSError:                  # the thread has ended meanwhile
            continue
        if RECEIVE_THREAD_PATTERN.fullmatch(name):
            found[int(tid)] = name
    return found


def raise_receive_threads(prio: int, log: Any) -> list[str]:
    """Put this process's middleware receive threads (:func:`receive_threads`) under SCHED_FIFO
    at ``prio``; returns the names of those raised. None found: an info line (another middleware,
    or not Linux); refused: a warning (they keep normal scheduling)."""
    threads = receive_threads()
    if not threads:
        log.info('no middleware receive threads found by name: they keep their scheduling')
        return []
    raised, refused = [], []
    for tid, name in sorted(threads.items()):
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(prio))
            raised.append(name)
        except (AttributeError, OSError) as exc:
            refused.append(f'{name} ({exc})')
    if refused:
        log.warning(f'SCHED_FIFO {prio} refused for middleware receive threads: '
                    f'{", ".join(refused)}; they keep normal scheduling')
    if raised:
        log.info(f'middleware receive threads under SCHED_FIFO {prio}: {", ".join(raised)}')
    return raised
