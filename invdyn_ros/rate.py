"""Rate estimation for a measured sample rate (``FilterConfig.rate_hz=None``): the robust period
of a block of stamp differences, and the block rule that re-estimates it only on a sustained
change -- not for a burst, a pause, or missed samples (issue 15).
:class:`~invdyn_ros.estimation.StreamingEstimator` feeds it blocks and redesigns its filter."""
from __future__ import annotations

__all__ = ['robust_period', 'WARMUP_INTERVALS', 'RATE_BLOCK', 'RATE_BLOCK_SHORT', 'SETTLE_BLOCKS',
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
