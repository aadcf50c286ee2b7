"""The demo's process supervision (ROS-free): its children in their own process groups, stopped
exactly once and gracefully (SIGINT, SIGTERM, SIGKILL), dying with the demo (PR_SET_PDEATHSIG),
and the demo's own SIGINT / SIGTERM handling, under which ``ros2 launch``'s escalation still lets
the cleanup finish. Used by ``invdyn_demo``; the rules are tested by ``test/test_demo.py``'s
interrupt tests (real processes)."""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ['CHILD_BOOT', 'ChildProcess', 'STOP_SIGNALS', 'StopSignals']

#: Run in the child instead of ``-m invdyn_ros.ros.node``: first ask Linux to SIGTERM this process
#: when the demo dies (PR_SET_PDEATHSIG survives exec; set after exec, not in a preexec_fn, which is
#: unsafe in a process that already has threads), exit if the demo is already gone, then run the
#: node module exactly as ``python -m`` would.
CHILD_BOOT = (
    'import ctypes, os, runpy, signal, sys\n'
    'parent = int(sys.argv[1])\n'
    'try:\n'
    '    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)\n'
    'except Exception:\n'
    '    pass\n'
    'if os.getppid() != parent:\n'
    '    sys.exit(1)\n'
    'sys.argv = [sys.argv[2]] + sys.argv[3:]\n'
    'runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)\n')


class StopSignals:
    """SIGINT / SIGTERM handling of the demo. The first signal interrupts the run
    (KeyboardInterrupt: the clean path, children stopped, exit 130 or --interrupt-exit-code);
    a later one never interrupts that cleanup -- ``ros2 launch`` escalates SIGINT -> SIGTERM
    after 5 s, and a KeyboardInterrupt inside the cleanup would abandon it -- but counts in
    ``extra``, which makes :meth:`ChildProcess.stop` go on to its next, harder signal at once."""

    def __init__(self) -> None:
        self.interrupted = False
        self.extra = 0

    def __call__(self, signum, frame) -> None:
        if self.interrupted:
            self.extra += 1
            return
        self.interrupted = True
        raise KeyboardInterrupt


STOP_SIGNALS = StopSignals()


class ChildProcess:
    """A child in its own process group (so its own children -- the trainer -- stop with it),
    output to a log file, stopped gracefully (SIGINT, then SIGTERM, then SIGKILL) exactly once;
    each further stop signal the demo gets moves on to the next of these at once."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.cmd, self.log_path = name, cmd, log_path
        self._log = open(log_path, 'wb')
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.pgid = self.proc.pid  # start_new_session: the child leads its own group
        atexit.register(self.stop)

    def poll(self) -> int | None:
        return self.proc.poll()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace_s: float = 10.0) -> int | None:
        """Stop the whole group; returns the child's exit status."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0),
                              (signal.SIGKILL, 5.0)):
                self._signal_group(sig)
                if self._wait(wait):
                    break
        # Whatever the leader did, leave no member of its group behind (e.g. a trainer worker).
        self._signal_group(signal.SIGKILL)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def _wait(self, timeout: float) -> bool:
        """True when the child exited within ``timeout``; False at the timeout or as soon as the
        demo got another stop signal (StopSignals.extra grew)."""
        extra = STOP_SIGNALS.extra
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.proc.wait(timeout=max(0.0, min(0.05, deadline - time.monotonic())))
                return True
            except subprocess.TimeoutExpired:
                if STOP_SIGNALS.extra != extra or time.monotonic() >= deadline:
                    return False

    def tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, 'rb') as f:
                data = f.read()[-20000:].decode('utf-8', 'replace')
        except OSError:
            return ''
        return '\n'.join(data.splitlines()[-lines:])
