"""The learner's replay memory: :class:`ReplayBuffer` (a FIFO of the newest windows + a reservoir).

Re-exported by :mod:`invdyn_ros.learning.learner`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from invdyn_ros.errors import CheckpointError, ConfigError

__all__ = ['ReplayBuffer', 'as_numpy']


def as_numpy(t: Any) -> np.ndarray:
    """A tensor (detached, on the CPU) or anything array-like as a numpy array."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


class ReplayBuffer:
    """FIFO of the newest ``recent_capacity`` windows + a reservoir of older ones (≤ ``capacity``).

    Windows evicted from the FIFO form a stream that is reservoir-sampled (Vitter's Algorithm R): after
    ``e`` evictions every evicted window is in the reservoir with the same probability
    ``min(1, R / e)``, so the reservoir is a uniform sample of the whole history, however long.
    Storage is float32 (training runs in float32 anyway) and preallocated; untouched pages cost no
    memory. Samples are stored *raw* (unscaled): the scalers keep changing, so scaling happens when a
    batch is drawn.
    """

    def __init__(self, capacity: int, recent_capacity: int, window: int, width: int, n_out: int,
                 seed: int = 0) -> None:
        if capacity < 1 or not 0 <= recent_capacity <= capacity:
            raise ConfigError(f'need capacity >= 1 and 0 <= recent_capacity <= capacity, got '
                              f'{capacity}, {recent_capacity}')
        self.capacity = int(capacity)
        self.recent_capacity = int(recent_capacity)
        self.reservoir_capacity = self.capacity - self.recent_capacity
        self.window, self.width, self.n_out = int(window), int(width), int(n_out)
        self.rng = np.random.default_rng(seed)
        shape = (self.window, self.width)
        self._rx = np.zeros((self.recent_capacity, *shape), dtype=np.float32)
        self._ry = np.zeros((self.recent_capacity, self.n_out), dtype=np.float32)
        self._sx = np.zeros((self.reservoir_capacity, *shape), dtype=np.float32)
        self._sy = np.zeros((self.reservoir_capacity, self.n_out), dtype=np.float32)
        self._r_head = 0       # index of the oldest FIFO entry once the FIFO is full
        self._r_size = 0
        self._s_size = 0
        self.evicted = 0       # windows that have left the FIFO (the reservoir's input stream)
        self.added = 0

    def __len__(self) -> int:
        return self._r_size + self._s_size

    @property
    def recent_size(self) -> int:
        return self._r_size

    @property
    def reservoir_size(self) -> int:
        return self._s_size

    def add(self, window: np.ndarray, tau: np.ndarray) -> None:
        """Append one (window (L, width), tau (n_out,)) sample; the caller has validated it."""
        self.added += 1
        if self.recent_capacity == 0:
            self._to_reservoir(window, tau)
            return
        if self._r_size < self.recent_capacity:
            i = (self._r_head + self._r_size) % self.recent_capacity
            self._r_size += 1
        else:
            i = self._r_head
            self._to_reservoir(self._rx[i], self._ry[i])   # copies before we overwrite slot i
            self._r_head = (self._r_head + 1) % self.recent_capacity
        self._rx[i] = window
        self._ry[i] = tau

    def _to_reservoir(self, window: np.ndarray, tau: np.ndarray) -> None:
        self.evicted += 1
        if self.reservoir_capacity == 0:
            return
        if self._s_size < self.reservoir_capacity:
            j = self._s_size
            self._s_size += 1
        else:
            j = int(self.rng.integers(0, self.evicted))
            if j >= self.reservoir_capacity:
                return
        self._sx[j] = window
        self._sy[j] = tau

    def sample(self, batch: int, recent_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """A batch (with replacement) of ``round(batch * recent_fraction)`` FIFO windows, rest reservoir.

        When one part is empty the whole batch comes from the other. Returns float32 copies
        ``X (batch, L, width)``, ``Y (batch, n_out)``. Raises ValueError when the buffer is empty.
        """
        if len(self) == 0:
            raise ValueError('cannot sample from an empty replay buffer')
        n_recent = int(round(batch * recent_fraction))
        if self._s_size == 0:
            n_recent = batch
        elif self._r_size == 0:
            n_recent = 0
        ri = self.rng.integers(0, self._r_size, n_recent) if n_recent else np.empty(0, np.int64)
        # FIFO draws are positions from the oldest entry, mapped to slots: the same draws pick the
        # same windows whatever the ring's rotation, so a buffer restored from a checkpoint (stored
        # oldest first, head 0) continues exactly like the one that was saved
        ri = (ri + self._r_head) % max(self.recent_capacity, 1)
        si = self.rng.integers(0, self._s_size, batch - n_recent) if batch - n_recent else \
            np.empty(0, np.int64)
        X = np.concatenate([self._rx[ri], self._sx[si]])
        Y = np.concatenate([self._ry[ri], self._sy[si]])
        return X, Y

    def recent(self) -> tuple[np.ndarray, np.ndarray]:
        """The FIFO contents, oldest first (copies)."""
        idx = (self._r_head + np.arange(self._r_size)) % max(self.recent_capacity, 1)
        return self._rx[idx], self._ry[idx]

    def reservoir(self) -> tuple[np.ndarray, np.ndarray]:
        """The reservoir contents in slot order (copies)."""
        return self._sx[:self._s_size].copy(), self._sy[:self._s_size].copy()

    def state_dict(self) -> dict[str, Any]:
        """Tensors + plain values only (``weights_only``-safe); the FIFO is stored oldest first."""
        rx, ry = self.recent()
        sx, sy = self.reservoir()
        return {
            'capacity': self.capacity, 'recent_capacity': self.recent_capacity,
            'window': self.window, 'width': self.width, 'n_out': self.n_out,
            'recent_x': torch.from_numpy(np.ascontiguousarray(rx)),
            'recent_y': torch.from_numpy(np.ascontiguousarray(ry)),
            'reservoir_x': torch.from_numpy(sx), 'reservoir_y': torch.from_numpy(sy),
            'evicted': self.evicted, 'added': self.added,
            'rng': _rng_state_to_plain(self.rng),
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Capacities may differ from the saved ones: then the stored
        windows are re-added (reservoir first, FIFO last, so the newest stay the newest)."""
        try:
            rx, ry = as_numpy(d['recent_x']), as_numpy(d['recent_y'])
            sx, sy = as_numpy(d['reservoir_x']), as_numpy(d['reservoir_y'])
            shape = (self.window, self.width)
            for name, a, tail in (('recent_x', rx, shape), ('reservoir_x', sx, shape),
                                  ('recent_y', ry, (self.n_out,)), ('reservoir_y', sy, (self.n_out,))):
                if a.ndim != len(tail) + 1 or tuple(a.shape[1:]) != tail:
                    raise ValueError(f'buffer {name} has shape {a.shape}, expected (k, *{tail})')
            if len(rx) != len(ry) or len(sx) != len(sy):
                raise ValueError('buffer windows and torques have different lengths')
            same = (int(d['capacity']) == self.capacity
                    and int(d['recent_capacity']) == self.recent_capacity)
            if same and len(rx) <= self.recent_capacity and len(sx) <= self.reservoir_capacity:
                self._r_head, self._r_size = 0, len(rx)
                self._rx[:len(rx)], self._ry[:len(ry)] = rx, ry
                self._s_size = len(sx)
                self._sx[:len(sx)], self._sy[:len(sy)] = sx, sy
                self.evicted, self.added = int(d['evicted']), int(d['added'])
                if 'rng' in d:
                    self.rng.bit_generator.state = _rng_state_from_plain(d['rng'])
            else:
                self._r_head = self._r_size = self._s_size = 0
                self.evicted = self.added = 0
                for x, y in zip(np.concatenate([sx, rx]), np.concatenate([sy, ry])):
                    self.add(x, y)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f'replay buffer state is invalid: {exc}') from exc


def _rng_state_to_plain(rng: np.random.Generator) -> dict[str, Any]:
    """numpy bit-generator state as str/int only (its 128-bit ints are stored as decimal strings)."""
    st = rng.bit_generator.state
    return {'bit_generator': st['bit_generator'],
            'state': {k: str(v) for k, v in st['state'].items()},
            'has_uint32': int(st.get('has_uint32', 0)), 'uinteger': int(st.get('uinteger', 0))}


def _rng_state_from_plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {'bit_generator': d['bit_generator'],
            'state': {k: int(v) for k, v in d['state'].items()},
            'has_uint32': int(d['has_uint32']), 'uinteger': int(d['uinteger'])}
