"""Rate estimation for a measured sample rate (``FilterConfig.rate_hz=None``): the robust period
of a block of stamp differences, and the block rule that re-estimates it only on a sustained
change -- not for a burst, a pause, or missed samples (issue 15).
:class:`~invdyn_ros.stages.estimation.StreamingEstimator` feeds it blocks and redesigns its
filter."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ['RateEstimator', 'robust_period', 'WARMUP_INTERVALS', 'RATE_BLOCK', 'RATE_BLOCK_SHORT', 'SETTLE_BLOCKS',
           'RATE_TOLERANCE', 'BURST_FRACTION', 'MISSED_BASE_FRACTION']

#: Stamp differences collected before the nominal rate is estimated (``rate_hz=None``).
WARMUP_INTERVALS = 20
#: Rate monitoring (``rate_hz=None``): stamp differences of accepted samples are collected in
#: blocks; a block's robust median (differences below ``BURST_FRACTION`` x the reference period
#: are a burst and left out, unless fewer than a quarter of the block would remain) is compared
#: with the current period. Two consecutive blocks that agree with each other (within
#: ``RATE_TOLERANCE``) but not with the current period re-estimate the rate (a sustained change;
#: one burst or pause moves one block at most; missed samples, see ``MISSED_BASE_FRACTION``,
#: none). Blocks hold ``RATE_BLOCK_SHORT`` differences while the estimate settles (the first
#: design needs two agreeing blocks = ``WARMUP_INTERVALS`` differences; after a (re)design
#: ``SETTLE_BLOCKS`` short blocks follow, so a start-up burst that fooled the first design is
#: corrected within a few dozen samples; after a reset one), then ``RATE_BLOCK``.
RATE_BLOCK_SHORT = WARMUP_INTERVALS // 2
RATE_BLOCK = 50
SETTLE_BLOCKS = 5
RATE_TOLERANCE = 0.2
BURST_FRACTION = 0.2
#: A block whose median is 1.5 x the period or more but that has this fraction of its
#: differences at the period keeps it: samples were missed (issue 15), see ``_missed_samples``.
MISSED_BASE_FRACTION = 0.1


def _median_sorted(s: list[float]) -> float:
    h = len(s) // 2
    return s[h] if len(s) % 2 else (s[h - 1] + s[h]) / 2   # = np.median


def robust_period(dts: list[float], ref: float | None = None) -> float:
    """The median of stamp differences ``dts`` without a burst's: differences below
    ``BURST_FRACTION`` x ``ref`` (default: their own median) are left out, unless fewer than a
    quarter of them would remain (then the stream itself got faster: plain median).

    Plain Python on a short list (~5 us for a block of 50; numpy's per-call overhead would put
    ~40 us on the message path once per block, visible in the p99 latency)."""
    s = sorted(dts)
    m = _median_sorted(s)
    lo = BURST_FRACTION * (m if ref is None else ref)
    keep = [d for d in s if d >= lo]
    if keep and 4 * len(keep) >= len(s):
        m = _median_sorted(keep)
    return m


def _agree(a: float, b: float) -> bool:
    return max(a, b) <= (1.0 + RATE_TOLERANCE) * min(a, b)


def _missed_samples(block: list[float], m: float, period: float) -> bool:
    """A block slower than ``period`` by half or more that still has ``MISSED_BASE_FRACTION`` of
    its differences at ``period``: samples were missed (the gaps are multiples of the period),
    the stream did not slow down (a slower stream has no differences left at the old period)."""
    if m < 1.5 * period:
        return False
    near = sum(1 for d in block if _agree(d, period))
    return near >= MISSED_BASE_FRACTION * len(block)


def _rate_step(period: float | None, candidate: list[float] | None, blocks: int,
               block: list[float]) -> tuple[float | None, list[float] | None, int, bool]:
    """One completed block of stamp differences -> (period, candidate block, blocks since the
    last (re)design, whether the period changed). Pure: ``update`` and ``update_many`` share it."""
    m = robust_period(block, period)
    if period is not None and (_agree(m, period) or _missed_samples(block, m, period)):
        return period, None, blocks + 1, False
    if candidate is not None and _agree(m, robust_period(candidate, period)):
        return robust_period(candidate + block), None, 0, True
    return period, block, blocks, False


@dataclass
class RateEstimator:
    """The rate monitor of one :class:`~invdyn_ros.stages.estimation.StreamingEstimator` (measured
    rates): the current block of stamp differences, the period, a candidate block that disagreed
    with it, and the blocks since the last (re)design. The estimator appends to ``dts`` (hot
    path), calls :meth:`block` when ``len(dts) >= size`` and redesigns its filter on a change."""

    period: float | None = None          # the monitored nominal period
    cand: list[float] | None = None
    blocks: int = 0
    size: int = RATE_BLOCK_SHORT
    dts: list[float] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        return self.blocks >= SETTLE_BLOCKS

    def restart(self) -> None:
        """After a reset: a new, short block (a settled rate stays settled)."""
        self.dts.clear()
        self.cand = None
        self.size = RATE_BLOCK_SHORT

    def block(self) -> bool:
        """The full block ``dts``: the rule (:func:`_rate_step`); True when ``period`` changed."""
        block, self.dts = self.dts, []
        period, self.cand, self.blocks, changed = _rate_step(self.period, self.cand, self.blocks,
                                                             block)
        self.size = RATE_BLOCK_SHORT if self.blocks < SETTLE_BLOCKS else RATE_BLOCK
        if changed:
            self.period = period
        return changed

    def feed(self, dts: np.ndarray, commit: bool) -> int | None:
        """``update``'s monitoring for the stamp differences of a batch run: the index of the
        first one that re-estimates the rate or settles it (None: none does; both change what
        the following samples are checked against). ``commit``: apply them (only for differences
        that change neither, as found by a call with ``commit=False``)."""
        period, cand, blocks, size = self.period, self.cand, self.blocks, self.size
        cur = list(self.dts)
        pos, T = 0, len(dts)
        while T - pos >= size - len(cur):
            take = size - len(cur)
            block = cur + dts[pos:pos + take].tolist()
            pos += take
            settled = blocks >= SETTLE_BLOCKS
            period, cand, blocks, changed = _rate_step(period, cand, blocks, block)
            if changed or settled != (blocks >= SETTLE_BLOCKS):
                return pos - 1
            cur = []
            size = RATE_BLOCK_SHORT if blocks < SETTLE_BLOCKS else RATE_BLOCK
        if commit:
            cur += dts[pos:].tolist()
            self.dts[:] = cur
            self.cand, self.blocks, self.size = cand, blocks, size
        return None
