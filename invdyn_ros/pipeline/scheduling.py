"""Thread scheduling for work beside the control thread; imports nothing but ``os``.

The node's control thread may run under SCHED_FIFO (``realtime_priority``), and a thread inherits
its creator's policy: a helper thread that it starts for background work (the pipeline's
checkpoint writer, the trajectory relay) would then compete with the very loop it should stay
behind. :func:`normal_scheduling` is what such a thread calls first. It lives here, apart from the
pipeline's torch modules, so that ``ros.trajectory_msgs_io`` (the relay) imports it at module
level and still loads no torch: the demo's controller imports that module in a process without.
"""
from __future__ import annotations

import os

__all__ = ['normal_scheduling']


def normal_scheduling() -> None:
    """Run the calling thread under normal scheduling (SCHED_OTHER). A helper thread started by
    a SCHED_FIFO control thread (the node's ``realtime_priority``) inherits SCHED_FIFO; one that
    does background work calls this first. No-op where it is already normal or not supported."""
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass
