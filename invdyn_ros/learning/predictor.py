"""Inference-only copy of a learned model, with an O(1)-per-sample streaming form for the control loop.

A :class:`Predictor` is rebuilt from the model kind and options (never from pickled objects) and
receives weights as plain tensors from :meth:`OnlineLearner.export_weights` (possibly through a
process boundary), so the training side can hot-swap weights without touching the control loop's
objects.

Why streaming: a full ``nn.LSTM`` forward over a window of L=10 rows costs ~200 µs per sample, most
of it per-call overhead. Running the cells directly, the window prediction for sample k equals the
state of a recurrent chain started from zero at sample ``k - L + 1``. The predictor keeps L such
chains, staggered by one sample: at every sample the chain ``k mod L`` is restarted from zero, all L
chains advance by one row together -- per layer an (L, H) cell step in numpy (:meth:`_advance_chains`,
the arithmetic of ``torch.lstm_cell`` / ``torch.gru_cell``, half their time here) -- and the chain
``(k + 1) mod L`` (which has now seen exactly the last L rows) is read out through the head. The
result equals ``predict(last L rows)`` up to float32 rounding.

Scaling lives inside: raw rows in, raw torques (float64 numpy) out. Inputs are standardized with the
exported input scaler and clipped to ``±input_clip`` exactly as the learner does in training.

The read-out is split from the bookkeeping (why: the control loop's latency budget). Of the L chains
only ONE -- the read-out chain -- determines this sample's output; the other L - 1 only prepare later
outputs. :meth:`push` computes the read-out chain's step first, as a single-row cell in numpy (a
batch-1 LSTM cell is ~7 µs in numpy vs ~15 µs through torch's dispatcher, see :meth:`_readout`), and
then advances every chain (one (L, H) numpy cell step per layer). With ``push(row, defer=True)``
the second part waits for :meth:`complete`, so a caller can publish the prediction first and do the
rest off its latency path. The published value is the same read-out (compiled or numpy, below) in
both cases, so deferred and immediate pushes give bit-identical outputs.

With numba installed the read-out (scaling, finiteness check, every layer's single-row cell and
the head) is one compiled call, :func:`kernels.recurrent_readout` (in the node ~35 µs less per
sample than the ~30 numpy calls, which run cold after the thread wakes); without numba the numpy
cells of :meth:`_readout` do the same arithmetic (tested equal up to float32 rounding).

After new weights are loaded the chains are rebuilt by replaying the last ``L - 1`` raw rows (kept in a
small ring), so the stream stays exactly equal to ``predict(last L rows)`` with the *new* weights.

Size: about 560 lines because the windowed form (``predict``), the streaming chains and the
read-out (compiled and numpy) share one set of weights, scalers and cell constants, which must
change together when weights load; a third of the lines are these explanations.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from invdyn_ros.errors import CheckpointError, ConfigError
from invdyn_ros.learning.models import build_model, config_to_dict
from invdyn_ros.learning.scaling import RunningScaler
from invdyn_ros.stages import kernels

__all__ = ['Predictor']

DEFAULT_INPUT_CLIP = 10.0


class Predictor:
    """Inference-only model: ``load_weights``, ``predict(window)``, streaming ``push(row)``.

    ``version`` counts successful :meth:`load_weights` calls (0 = untrained initial weights).
    Not thread-safe: one caller (the control loop) at a time.
    """

    def __init__(self, kind: str, n_joints: int, model_options: Mapping[str, Any] | None = None,
                 window: int = 10) -> None:
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
            raise ConfigError(f'window must be a positive integer, got {window!r}')
        self.kind = kind
        self.n_joints = int(n_joints)
        self.width = 3 * self.n_joints
        self.window = int(window)
        self.model: nn.Module = build_model(kind, self.n_joints, **dict(model_options or {}))
        self.model.float().eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model_config = config_to_dict(self.model.config)
        self.version = 0
        self.input_clip = DEFAULT_INPUT_CLIP
        self.in_scaler = RunningScaler(self.width)
        self.out_scaler = RunningScaler(self.n_joints)
        self.counters = {'pushed': 0, 'rejected_rows': 0, 'nonfinite_outputs': 0}
        self._streaming = kind in ('lstm', 'gru')
        self._lstm = kind == 'lstm'
        # the compiled read-out (numba), if available; else the numpy cells of _readout
        self._kernel = kernels.recurrent_readout if self._streaming else None
        if self._kernel is not None:
            kernels.warm_up()
        self._raw = np.zeros((self.window, self.width))   # ring of the last L raw rows
        self._raw_pos = 0
        # the model's input row (the scaled newest row, plus the velocity sign features when the
        # model has them), preallocated
        self._sign_gain = float(getattr(self.model.config, 'velocity_sign_gain', 0.0))
        self.input_features = int(getattr(self.model.config, 'input_features', self.width))
        self._xs = np.zeros(self.input_features, dtype=np.float32)
        self._xs_scaled = self._xs[:self.width]
        n = self.n_joints
        self._xs_velocity, self._xs_sign = self._xs[n:2 * n], self._xs[3 * n:]
        self._refresh_constants()
        self.reset_stream()

    # ------------------------------------------------------------------ weights
    def _refresh_constants(self) -> None:
        """Cache the hot-path constants: scaling (float32 numpy and torch) and the cell weights.

        The streaming path runs in numpy: a numpy op on a few dozen floats costs well under 1 µs,
        a torch op 2-3 µs of dispatch, and at ~15 such ops per sample that is the difference
        between meeting and missing the control loop's budget. That includes the cell steps that
        advance the L chains (:meth:`_advance_chains`): ``torch.lstm_cell`` / ``gru_cell`` took
        about twice as long as the same arithmetic as (L, H) numpy products into preallocated
        arrays (``bench/stream_advance.py``).
        """
        std_in = self.in_scaler.std.astype(np.float32)
        mean_in = self.in_scaler.mean.astype(np.float32)
        # (x - mean) / std fused as x * (1/std) + (-mean/std)
        self._np_in_inv = (np.float32(1.0) / std_in).astype(np.float32)
        self._np_in_shift = (-mean_in / std_in).astype(np.float32)
        self._np_out_mean = self.out_scaler.mean.astype(np.float32)
        self._np_out_std = self.out_scaler.std.astype(np.float32)
        self._in_inv = torch.from_numpy(self._np_in_inv).view(1, -1)
        self._in_shift = torch.from_numpy(self._np_in_shift).view(1, -1)
        self._out_mean = torch.from_numpy(self._np_out_mean).view(1, -1)
        self._out_std = torch.from_numpy(self._np_out_std).view(1, -1)
        self._clip = np.float32(self.input_clip)
        self._k_gain = np.float32(self._sign_gain)
        if self._streaming:
            rnn = self.model.rnn
            self._layers = rnn.num_layers
            self._hidden = rnn.hidden_size
            # per layer (W_ih, W_hh, b_ih, b_hh) as torch stores them (gate order i, f, g, o)
            cell_w = [tuple(getattr(rnn, f'{name}_l{k}').detach() for name in
                            ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'))
                      for k in range(self._layers)]
            # the linear head with the output scaling folded in, in float64: the read-out's last
            # two numpy calls give the torque (instead of five: head, unscale, cast)
            std = self.out_scaler.std.astype(np.float32).astype(np.float64)
            mean = self.out_scaler.mean.astype(np.float32).astype(np.float64)
            self._np_head_w = std[:, None] * self.model.head.weight.detach().numpy()
            self._np_head_b = std * self.model.head.bias.detach().numpy() + mean
            self._np_cells = [self._numpy_cell_weights(*(t.numpy() for t in w))
                              for w in cell_w]
            H, layers = self._hidden, self._layers
            # the same blocks transposed, for :meth:`_advance_chains`' (L, .) @ (., 4H) products
            self._adv_w = [(np.ascontiguousarray(Wx.T), np.ascontiguousarray(Whb[:, :H].T),
                            np.ascontiguousarray(Whb[:, -1])) for Wx, Whb in self._np_cells]
            # the read-out's prepared part (:meth:`_prepare`), per layer: [W_h, b] @ [h; 1], h, c
            self._pre = np.zeros((layers, 4 * H), dtype=np.float32)
            self._pre_h = np.zeros((layers, H), dtype=np.float32)
            self._pre_c = np.zeros((layers, H), dtype=np.float32)
            self._pre_k = -1                 # the weights changed: no prepared read-out
            # the compiled read-out's arguments (kernels.recurrent_readout), all C-contiguous
            self._k_wx0 = self._np_cells[0][0]
            self._k_wxr = np.ascontiguousarray(np.stack([w[0] for w in self._np_cells[1:]])) \
                if layers > 1 else np.zeros((0, 4 * H, H), dtype=np.float32)
            self._k_g = np.zeros(4 * H, dtype=np.float32)
            self._k_h = np.zeros((layers, H), dtype=np.float32)
        elif self.kind == 'mlp':
            self._np_mlp = (self.model.hidden.weight.detach().numpy().copy(),
                            self.model.hidden.bias.detach().numpy().copy(),
                            self.model.head.weight.detach().numpy().copy(),
                            self.model.head.bias.detach().numpy().copy())

    def _numpy_cell_weights(self, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
                            b_hh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One layer's weights for :meth:`_readout`: ``W = [W_x | W_h, b]``, returned as its two
        column blocks ``(W_x, [W_h, b])``.

        ``W @ [x; h; 1]`` gives every gate pre-activation, biases included, in one product (per
        numpy call ~1 µs of overhead is what costs here, not the arithmetic); the ``[h; 1]`` part
        is computed by :meth:`_prepare` off the latency path, so the read-out multiplies only the
        new input. A sigmoid is computed as ``0.5 * tanh(0.5 a) + 0.5`` (one ``np.tanh``
        over all gates instead of a slow ``expit``), so the rows of the sigmoid gates are halved.
        LSTM: torch's gate order (i, f, g, o) becomes (i, f, o, g), so the sigmoid gates are one
        slice; both biases are summed. GRU (r, z, n): the n gate needs ``W_in x + b_in`` and
        ``W_hn h + b_hn`` apart (the latter is multiplied by r), so the rows are
        ``[r, z | W_in x + b_in | W_hn h + b_hn]`` (4H).
        """
        H = self._hidden
        n_in = w_ih.shape[1]
        W = np.zeros((4 * H, n_in + H + 1), dtype=np.float64)
        if self.kind == 'lstm':
            perm = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
            W[:, :n_in] = w_ih[perm]
            W[:, n_in:n_in + H] = w_hh[perm]
            W[:, -1] = (b_ih.astype(np.float64) + b_hh)[perm]
            W[:3 * H] *= 0.5
        else:
            W[:2 * H, :n_in] = w_ih[:2 * H]
            W[:2 * H, n_in:n_in + H] = w_hh[:2 * H]
            W[:2 * H, -1] = b_ih[:2 * H].astype(np.float64) + b_hh[:2 * H]
            W[:2 * H] *= 0.5
            W[2 * H:3 * H, :n_in] = w_ih[2 * H:]
            W[2 * H:3 * H, -1] = b_ih[2 * H:]
            W[3 * H:, n_in:n_in + H] = w_hh[2 * H:]
            W[3 * H:, -1] = b_hh[2 * H:]
        W = W.astype(np.float32)
        # [x | h, 1] apart: the second part is known before the row arrives (:meth:`_prepare`)
        return np.ascontiguousarray(W[:, :n_in]), np.ascontiguousarray(W[:, n_in:])

    def load_weights(self, weights: Mapping[str, Any]) -> None:
        """Load ``OnlineLearner.export_weights()`` output (model state + scalers + input clip).

        Everything is validated before anything is changed: a wrong kind, joint count, model config,
        shape or a non-finite value raises :class:`CheckpointError` and keeps the current weights.
        """
        try:
            if weights.get('kind', self.kind) != self.kind:
                raise CheckpointError(f'weights are for a {weights["kind"]!r} model, predictor is '
                                      f'{self.kind!r}')
            if int(weights.get('n_joints', self.n_joints)) != self.n_joints:
                raise CheckpointError(f'weights are for {weights["n_joints"]} joints, predictor has '
                                      f'{self.n_joints}')
            mc = weights.get('model_config')
            if mc is not None and dict(mc) != self.model_config:
                raise CheckpointError(f'weights model config {dict(mc)} differs from '
                                      f'{self.model_config}')
            state = weights['model']
            own = self.model.state_dict()
            if set(state) != set(own):
                raise CheckpointError(f'weights have parameters {sorted(state)}, expected {sorted(own)}')
            for k, v in state.items():
                if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(own[k].shape):
                    raise CheckpointError(f'weight {k!r} has the wrong type or shape')
                if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    raise CheckpointError(f'weight {k!r} contains NaN/Inf')
            in_scaler = RunningScaler.from_state_dict(weights['in_scaler'])
            out_scaler = RunningScaler.from_state_dict(weights['out_scaler'])
            if in_scaler.dim != self.width or out_scaler.dim != self.n_joints:
                raise CheckpointError('scaler dimensions do not match the predictor')
            clip = float(weights.get('input_clip', DEFAULT_INPUT_CLIP))
            if not np.isfinite(clip) or clip <= 0:
                raise CheckpointError(f'input_clip must be positive, got {clip}')
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as exc:
            raise CheckpointError(f'invalid weights: {type(exc).__name__}: {exc}') from exc
        with torch.no_grad():
            self.model.load_state_dict(state)
        self.in_scaler, self.out_scaler, self.input_clip = in_scaler, out_scaler, clip
        self._refresh_constants()
        self.version += 1
        self._replay()

    def frozen(self) -> 'Predictor':
        """A copy for :meth:`predict` / :meth:`predict_many` in another thread: its own module
        with the current weights and the current scalers (``load_weights`` changes the module in
        place and replaces the scalers). Its stream is the original's: never ``push`` to it."""
        other = copy.copy(self)
        other.model = copy.deepcopy(self.model)
        return other

    # ------------------------------------------------------------------ window prediction
    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        # the same fused form as push(), so window and stream round identically
        return torch.addcmul(self._in_shift, x, self._in_inv).clamp_(-self.input_clip,
                                                                     self.input_clip)

    def _unscale(self, y: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self._out_mean, y, self._out_std)

    @torch.inference_mode()
    def predict(self, window: Any) -> np.ndarray:
        """Torque ``(n,)`` (float64) for one raw window ``(L', 3n)`` (oldest row first).

        Raises ValueError on a wrong shape or a non-finite value; use :meth:`push` in the control
        loop, which never raises."""
        x = torch.as_tensor(np.asarray(window, dtype=np.float32))
        if x.dim() != 2 or x.shape[1] != self.width or x.shape[0] < 1:
            raise ValueError(f'window must be (L, {self.width}), got {tuple(x.shape)}')
        if not bool(torch.isfinite(x).all()):
            raise ValueError('window contains NaN/Inf')
        y = self._unscale(self.model(self._scale(x)[None]))
        return y[0].double().numpy()

    @torch.inference_mode()
    def predict_many(self, windows: Any) -> np.ndarray:
        """Torques ``(B, n)`` for raw windows ``(B, L', 3n)``."""
        x = torch.as_tensor(np.asarray(windows, dtype=np.float32))
        if x.dim() != 3 or x.shape[2] != self.width:
            raise ValueError(f'windows must be (B, L, {self.width}), got {tuple(x.shape)}')
        if not bool(torch.isfinite(x).all()):
            raise ValueError('windows contain NaN/Inf')
        return self._unscale(self.model(self._scale(x))).double().numpy()

    # ------------------------------------------------------------------ streaming
    def reset_stream(self) -> None:
        """Forget all pushed rows: the next L-1 pushes return None."""
        self._k = 0
        self._raw_pos = 0
        self._raw_count = 0
        self._deferred = False       # a deferred row is forgotten with the stream
        self._pre_k = -1             # ... and so is a prepared read-out
        L = self.window
        if self._streaming:
            H = self._hidden
            # the L chains' states per layer (row c: chain c), advanced in place by _advance_chains
            self._hn = [np.zeros((L, H), dtype=np.float32) for _ in range(self._layers)]
            self._cn = [np.zeros((L, H), dtype=np.float32) for _ in range(self._layers)] \
                if self._lstm else None
            self._adv_g = np.zeros((L, 4 * H), dtype=np.float32)     # gate pre-activations
            self._adv_x = np.zeros((L, 4 * H), dtype=np.float32)     # a layer's input part
            self._adv_t = np.zeros((L, H), dtype=np.float32)
        elif self.kind != 'mlp':
            # rows written twice (i and i + L) so the window is always a contiguous slice
            self._ring = torch.zeros(2 * L, self.width)

    def _advance(self, xs: np.ndarray) -> np.ndarray | None:
        """Feed one model input row (float32 ``(F,)``, see :meth:`_scale_row`). Recurrent kinds:
        advance every chain (restarting chain ``k mod L``) and return None -- their output is
        :meth:`_readout`'s.
        Other kinds: return the scaled output ``(n,)`` (float32 numpy) once L rows are in."""
        L, k = self.window, self._k
        self._k = k + 1
        if self._streaming:
            self._advance_chains(xs, k % L)
            return None                  # the output comes from _readout, before this
        if k < L - 1:
            if self.kind != 'mlp':
                self._ring[k] = torch.from_numpy(xs)
                self._ring[k + L] = torch.from_numpy(xs)
            return None
        if self.kind == 'mlp':   # newest row only, like MLPModel.forward
            w1, b1, w2, b2 = self._np_mlp
            return w2 @ np.tanh(w1 @ xs + b1) + b2
        i = k % L
        self._ring[i] = torch.from_numpy(xs)
        self._ring[i + L] = torch.from_numpy(xs)
        with torch.inference_mode():
            return self.model(self._ring[i + 1:i + 1 + L][None])[0].numpy()

    def _advance_chains(self, xs: np.ndarray, c: int) -> None:
        """Advance all L chains by the scaled row ``xs`` through every layer, chain ``c``
        restarting from the zero state with it: per layer ``G = H W_h^T + X W_x^T + b`` for the
        (L, H) states at once (``X``: the row itself in the first layer, the chains' new states
        of the layer below after it), then the gates as in :meth:`_readout` (the weights of
        :meth:`_numpy_cell_weights`, transposed), in place into ``_hn`` / ``_cn``. The same
        arithmetic as ``torch.lstm_cell`` / ``torch.gru_cell`` up to float32 rounding
        (test_predictor checks the stream against the windowed ``nn.LSTM`` / ``nn.GRU``)."""
        H = self._hidden
        g, xin, t = self._adv_g, self._adv_x, self._adv_t
        inp = None
        for layer, (WxT, WhT, b) in enumerate(self._adv_w):
            h = self._hn[layer]
            h[c] = 0.0
            np.matmul(h, WhT, out=g)
            if inp is None:                      # the same row for every chain
                g += xs @ WxT
            else:
                np.matmul(inp, WxT, out=xin)
                g += xin
            g += b
            if self._lstm:                       # gates (i, f, o, g); i, f, o halved
                cc = self._cn[layer]
                cc[c] = 0.0
                np.tanh(g, out=g)
                sig = g[:, :3 * H]
                sig *= 0.5
                sig += 0.5
                cc *= g[:, H:2 * H]
                np.multiply(g[:, :H], g[:, 3 * H:], out=t)
                cc += t
                np.tanh(cc, out=h)
                h *= g[:, 2 * H:3 * H]
            else:                                # [r, z | W_in x + b_in | W_hn h + b_hn]
                rz = g[:, :2 * H]
                np.tanh(rz, out=rz)
                rz *= 0.5
                rz += 0.5
                n_ = g[:, 3 * H:]
                n_ *= g[:, :H]
                n_ += g[:, 2 * H:3 * H]
                np.tanh(n_, out=n_)
                # h' = n + z (h - n)
                np.subtract(h, n_, out=t)
                t *= g[:, H:2 * H]
                np.add(n_, t, out=h)
            inp = h

    def _scale_row(self, r: np.ndarray) -> np.ndarray:
        """Scale + clip into the preallocated row ``self._xs``, then the sign features
        ``tanh(gain * v)`` if the model has them (as its forward does)."""
        xs = self._xs_scaled
        np.multiply(r, self._np_in_inv, out=xs, casting='same_kind')
        np.add(xs, self._np_in_shift, out=xs)
        np.minimum(xs, self._clip, out=xs)      # np.clip costs several µs more per call
        np.maximum(xs, -self._clip, out=xs)
        if self._sign_gain > 0:
            sign = self._xs_sign
            np.multiply(self._xs_velocity, np.float32(self._sign_gain), out=sign)
            np.tanh(sign, out=sign)
        return self._xs

    def push(self, row: Any, defer: bool = False) -> np.ndarray | None:
        """Push the newest raw feature row ``(3n,)``; returns ``predict(last L rows)`` or None.

        None until L rows have been pushed since the last reset. A row with the wrong shape or a
        non-finite value is rejected and counted, and resets the stream (a window containing it
        would be meaningless); a non-finite output is counted and returned as None.

        ``defer=True`` (recurrent kinds; ignored otherwise) returns the same value but leaves the
        advance of the other chains to :meth:`complete`, which the next ``push`` also does first.
        """
        if self._deferred:
            self.complete()
        if type(row) is np.ndarray and row.dtype == np.float64 and row.ndim == 1:
            if self._kernel is not None and row.shape[0] == self.width and row.flags.c_contiguous:
                return self._push_compiled(row, defer)
            r = row                          # the pipeline's row: no conversion
        else:
            try:
                r = np.asarray(row, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                r = None
        if r is None or r.shape[0] != self.width or not np.isfinite(r).all():
            self.counters['rejected_rows'] += 1
            self.reset_stream()
            return None
        self.counters['pushed'] += 1
        self._keep_raw(r)
        xs = self._scale_row(r)
        if self._streaming:
            out = self._readout(xs) if self._k >= self.window - 1 else None
            if defer:
                self._deferred = True        # _advance(self._xs) in complete()
            else:
                self._advance(xs)
        else:
            y = self._advance(xs)
            out = None if y is None else \
                (y * self._np_out_std + self._np_out_mean).astype(np.float64)
        if out is None:
            return None
        if not np.isfinite(out).all():
            self.counters['nonfinite_outputs'] += 1
            return None
        return out

    def _keep_raw(self, r: np.ndarray) -> None:
        """Append a raw row to the ring of the last L (what :meth:`_replay` rebuilds from)."""
        self._raw[self._raw_pos] = r
        self._raw_pos = (self._raw_pos + 1) % self.window
        self._raw_count = min(self._raw_count + 1, self.window)

    def _push_compiled(self, r: np.ndarray, defer: bool) -> np.ndarray | None:
        """:meth:`push` of a float64 ``(3n,)`` row through the compiled kernel: scaling, the
        finiteness check and the read-out in one call (the numpy path's arithmetic, in the same
        float32 / float64 precisions; equal up to float32 rounding, tested)."""
        read = self._k >= self.window - 1
        if read and self._pre_k != self._k:
            self._prepare()
        out = np.empty(self.n_joints)
        status = self._kernel(r, self._np_in_inv, self._np_in_shift, self._clip,
                              self._k_gain, self.n_joints, self._xs, self._lstm, read,
                              self._k_wx0, self._k_wxr, self._pre, self._pre_h, self._pre_c,
                              self._np_head_w, self._np_head_b, self._k_g, self._k_h, out)
        if status == 1:                      # a non-finite row
            self.counters['rejected_rows'] += 1
            self.reset_stream()
            return None
        self.counters['pushed'] += 1
        self._keep_raw(r)
        if defer:
            self._deferred = True            # _advance(self._xs) in complete()
        else:
            self._advance(self._xs)
        if not read:
            return None
        if status == 2:
            self.counters['nonfinite_outputs'] += 1
            return None
        return out

    def complete(self) -> None:
        """Finish a ``push(row, defer=True)``: advance every chain by that row (no-op if none),
        and prepare the next row's read-out (:meth:`_prepare`), so both are off the fast path."""
        if self._deferred:
            self._deferred = False
            self._advance(self._xs)
            if self._k >= self.window - 1:
                self._prepare()

    def _prepare(self) -> None:
        """The read-out's share that does not depend on the next row: for the chain that will
        have seen exactly L rows once the next row arrives, per layer ``[W_h, b] @ [h; 1]`` and
        that chain's states ``h`` and (LSTM) ``c`` (zero when L = 1: the chain restarts), into
        ``_pre``, ``_pre_h``, ``_pre_c`` (one row per layer)."""
        L, k, H = self.window, self._k, self._hidden
        r = (k + 1) % L
        fresh = r == k % L
        for layer, (_, Whb) in enumerate(self._np_cells):
            if fresh:
                self._pre_h[layer] = 0.0
                self._pre[layer] = Whb[:, -1]
            else:
                h = self._pre_h[layer]
                h[:] = self._hn[layer][r]
                np.matmul(Whb[:, :H], h, out=self._pre[layer])
                self._pre[layer] += Whb[:, -1]
            if self._lstm:
                self._pre_c[layer] = 0.0 if fresh else self._cn[layer][r]
        self._pre_k = k

    def _readout(self, xs: np.ndarray) -> np.ndarray:
        """Torque (float64, ``(n,)``, output scaling undone) of the chain that has seen exactly the
        last L rows once the scaled row ``xs`` is appended: that chain's state before this row
        (zero when L = 1) advanced by ``xs`` through every layer as single-row numpy cells, then
        the linear head (with the output scaling folded in).
        Per layer only ``W_x @ x`` is computed here; the recurrent part comes from
        :meth:`_prepare` (done now if :meth:`complete` has not done it for this row).

        The same arithmetic as ``torch.lstm_cell`` / ``torch.gru_cell`` up to float32 rounding
        (test_predictor checks the stream against the windowed ``nn.LSTM`` / ``nn.GRU`` forward).
        """
        if self._pre_k != self._k:
            self._prepare()
        H = self._hidden
        x = xs
        lstm = self._lstm
        pre, hs, cs = self._pre, self._pre_h, self._pre_c
        for layer, (Wx, _) in enumerate(self._np_cells):
            g = Wx @ x
            g += pre[layer]
            if lstm:                             # gates (i, f, o, g); i, f, o rows halved
                np.tanh(g, out=g)
                s = g[:3 * H]
                s *= 0.5
                s += 0.5
                c_new = g[:H] * g[3 * H:]
                c_new += g[H:2 * H] * cs[layer]
                x = np.tanh(c_new)
                x *= g[2 * H:3 * H]
            else:                                # [r, z | W_in x + b_in | W_hn h + b_hn]
                rz = g[:2 * H]
                np.tanh(rz, out=rz)
                rz *= 0.5
                rz += 0.5
                nn_ = g[3 * H:]
                nn_ *= g[:H]
                nn_ += g[2 * H:3 * H]
                np.tanh(nn_, out=nn_)
                # h' = (1 - z) n + z h = n + z (h - n)
                x = hs[layer] - nn_
                x *= g[H:2 * H]
                x += nn_
        return self._np_head_w @ x + self._np_head_b

    def _replay(self) -> None:
        """Rebuild the stream state with the current weights from the last L-1 raw rows."""
        count = self._raw_count
        keep = min(count, self.window - 1)
        idx = (self._raw_pos - keep + np.arange(keep)) % self.window
        rows = self._raw[idx].copy()
        self.reset_stream()
        for r in rows:
            self._keep_raw(r)
            self._advance(self._scale_row(r))

    def __repr__(self) -> str:
        return (f'Predictor(kind={self.kind!r}, n_joints={self.n_joints}, window={self.window}, '
                f'version={self.version})')
