"""Which command ``~/feedforward`` carries: the measured state's prediction, the reference's,
or zeros.

One rule, one place (ROS-free; the node only publishes what it is told). Events, with their time
``now`` (s, one monotonic clock, e.g. ``time.perf_counter``):

- ``on_measured(now, ready, fallback=False)``: a joint state gave a prediction (a valid output).
  The input is fresh again. Published: the measured feedforward if ``ready``, else the physics
  prior's alone if ``fallback`` (the prior passes the readiness test, the learned prediction does
  not: ``Pipeline.fallback_ready``), else zeros -- only when no reference came within
  ``stale_timeout_s`` (a fresh reference owns the topic).
- ``on_unpredicted(now, ready)``: a joint state was accepted but gave no prediction (warming up,
  no filter). Zeros while not ready and no fresh reference; otherwise nothing. The input does
  not become fresh.
- ``on_reference(now, ready, fallback=False)``: a valid reference was predicted. The reference
  feedforward if ``ready`` (else the prior's for the reference if ``fallback``) and the measured
  input is fresh (a prediction within ``stale_timeout_s``), else zeros.
- ``on_tick(now)`` (the watchdog): once no prediction came for ``stale_timeout_s``, zeros on every
  tick; the first such tick is a stale *event* (``Decision.became_stale``: the node counts and
  logs it).
- ``set_active(active)`` (lifecycle): while inactive every publication is zeros; deactivating
  publishes zeros at once.

A :class:`Decision` names what to publish (``publish``: ``'measured'``, ``'reference'``,
``'zeros'`` or None for nothing; ``prior``: the physics prior's torque instead of the learned
one) and the node's counter to bump (``counter``). The decisions are module constants: compare
with ``is``.
"""
from __future__ import annotations

import math
from typing import NamedTuple


class Decision(NamedTuple):
    publish: str | None          # 'measured' | 'reference' | 'zeros' | None (publish nothing)
    counter: str | None          # the node's counter to bump when published
    became_stale: bool = False   # the input has just turned stale (count / log it once)
    prior: bool = False          # the physics prior alone (the learned prediction is not ready)


NOTHING = Decision(None, None)
ZEROS = Decision('zeros', 'feedforward_zero')
MEASURED = Decision('measured', 'feedforward_measured')
REFERENCE = Decision('reference', 'feedforward_reference')
MEASURED_PRIOR = Decision('measured', 'feedforward_prior', prior=True)
REFERENCE_PRIOR = Decision('reference', 'feedforward_prior', prior=True)
ZEROS_STALE = Decision('zeros', 'feedforward_zero', True)


class FeedforwardGate:
    """State: the time of the last valid reference and of the last prediction from a measured
    state, whether the input is stale, whether the lifecycle node is active (starts inactive
    and stale)."""

    __slots__ = ('stale_timeout_s', 'last_reference', 'last_measured', 'stale', 'active')

    def __init__(self, stale_timeout_s: float, active: bool = False) -> None:
        if not (stale_timeout_s > 0 and math.isfinite(stale_timeout_s)):
            raise ValueError(f'stale_timeout_s must be finite and > 0, got {stale_timeout_s!r}')
        self.stale_timeout_s = float(stale_timeout_s)
        self.last_reference = -math.inf
        self.last_measured = -math.inf
        self.stale = True
        self.active = active

    def _gated(self, decision: Decision) -> Decision:
        """Inactive: whatever would be published is zeros."""
        if self.active or decision.publish is None or decision.publish == 'zeros':
            return decision
        return ZEROS

    def _reference_fresh(self, now: float) -> bool:
        return now - self.last_reference < self.stale_timeout_s

    def on_measured(self, now: float, ready: bool, fallback: bool = False) -> Decision:
        self.last_measured = now
        self.stale = False
        if self._reference_fresh(now):
            return NOTHING
        return self._gated(MEASURED if ready else MEASURED_PRIOR if fallback else ZEROS)

    def on_unpredicted(self, now: float, ready: bool) -> Decision:
        if ready or self._reference_fresh(now):
            return NOTHING
        return ZEROS

    def on_reference(self, now: float, ready: bool, fallback: bool = False) -> Decision:
        self.last_reference = now
        if (ready or fallback) and now - self.last_measured < self.stale_timeout_s:
            return self._gated(REFERENCE if ready else REFERENCE_PRIOR)
        return ZEROS

    def on_tick(self, now: float) -> Decision:
        if now - self.last_measured < self.stale_timeout_s:
            return NOTHING
        if not self.stale:
            self.stale = True
            return ZEROS_STALE
        return ZEROS

    def set_active(self, active: bool) -> Decision:
        self.active = bool(active)
        return NOTHING if self.active else ZEROS
