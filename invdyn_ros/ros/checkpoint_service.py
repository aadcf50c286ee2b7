"""The node's checkpoints while it runs: the ``~/save_checkpoint`` service (std_srvs/Trigger),
the periodic save and the outcome of the background saves for ``/diagnostics``:
:class:`CheckpointService`.

The saves themselves (atomic sets, checksums, the background thread) are the pipeline's
(:meth:`~invdyn_ros.pipeline.pipeline.Pipeline.start_checkpoint`); this object only answers the
service with the real outcome and keeps the last result. The final save at shutdown is the
node's release, not this object's.
"""
from __future__ import annotations

import time
from typing import Any

__all__ = ['CheckpointService']


class CheckpointService:
    """Saves of ``pipeline`` to the prefix ``path``; ``log``: the node's logger.

    ``on_request_async`` is the service callback for rclpy's EventsExecutor (it runs other
    callbacks while the coroutine waits for the save); ``on_request`` the one for the
    SingleThreadedExecutor, which would re-run a waiting coroutine before anything else (busy),
    so there the callback waits for the save thread plainly (the control loop waits with it).
    ``failed`` (the reason of the last failed save, None after a success) and ``last`` (``ok
    HH:MM:SS`` / ``failed: ...`` / ``none yet``) are what the diagnostics report."""

    def __init__(self, pipeline: Any, path: str | None, log: Any) -> None:
        self.pipeline = pipeline
        self.path = path
        self.log = log
        self.failed: str | None = None
        self.last = 'none yet'

    def on_timer(self) -> None:
        """The periodic save (``checkpoint_period_s``)."""
        if not self.pipeline.start_checkpoint(self.path):
            self.log.warning('periodic checkpoint skipped (one is running or the trainer has '
                             'failed)')

    def _start(self, response: Any, on_done: Any) -> bool:
        """Start the background save for the service; False (response filled) if it cannot."""
        response.success = False
        if not self.path:
            response.message = 'checkpoint_path is not set'
            return False
        if self.pipeline.start_checkpoint(self.path, on_done=on_done):
            return True
        response.message = ('a checkpoint is already being written (periodic or requested); '
                            'call again when it is done' if self.pipeline.checkpoint_running else
                            f'cannot checkpoint: trainer failed: {self.pipeline.trainer_error}')
        return False

    @staticmethod
    def _answer(response: Any, ok: bool, detail: Any) -> Any:
        response.success = bool(ok)
        response.message = (f'checkpoint written: {sorted(detail.values())}' if ok else
                            f'checkpoint failed: {detail} (the previous checkpoint is kept)')
        return response

    async def on_request_async(self, request: Any, response: Any) -> Any:
        """``~/save_checkpoint``: answers when the save is done; ``success`` is its outcome."""
        from rclpy.task import Future
        done: Future = Future()
        if not self._start(response, lambda ok, detail: done.set_result((ok, detail))):
            return response
        ok, detail = await done
        return self._answer(response, ok, detail)

    def on_request(self, request: Any, response: Any) -> Any:
        """``~/save_checkpoint`` for ``executor: single``: waits for the save thread."""
        result: list = []
        if not self._start(response, lambda ok, detail: result.append((ok, detail))):
            return response
        self.pipeline.save_checkpoint_wait()
        ok, detail = result[0] if result else (False, 'the save thread ended without a result')
        return self._answer(response, ok, detail)

    def check_result(self) -> None:
        """Log the outcome of a save finished since the last call and keep it for the
        diagnostics (``failed``, ``last``)."""
        result = self.pipeline.checkpoint_result()
        if result is None:
            return
        ok, detail = result
        if ok:
            self.log.info(f'checkpoint written: {sorted(detail.values())}')
            self.last = f'ok {time.strftime("%H:%M:%S")}'
            self.failed = None
        else:
            self.log.error(f'checkpoint failed: {detail} (the previous checkpoint is kept)')
            self.last = f'failed: {detail}'
            self.failed = str(detail)
