"""Inverse-dynamics networks: windows of joint states -> joint torques.

Every model maps a batch of windows ``x`` of shape ``(B, L, 3n)`` to torques ``(B, n)``. The
features of one time step are ``[q(n), qd(n), qdd(n)]`` and the window is oldest-first, so
``x[:, -1]`` is the newest row, whose torque is the label (see docs/ARCHITECTURE.md). Inputs and
outputs are in the *scaled* space of :class:`invdyn_ros.learning.scaling.RunningScaler`; the models
know nothing about units.

Each kind is a plain ``nn.Module`` with a frozen config dataclass (nanoGPT style), so a checkpoint
only needs ``kind`` + ``config_to_dict(model.config)`` + ``state_dict()`` to rebuild the exact net.

Kinds (``MODEL_KINDS``):

- ``lstm``: Rueckert et al. 2017 ("Learning inverse dynamics models in O(n) time with LSTM
  networks"): at most two stacked LSTM layers, the last hidden state, a linear read-out.
- ``gru``: the same with GRU cells (the second network of the dual identifier).
- ``mlp``: the baseline of Wang et al.: one tanh hidden layer on the newest row only.
- ``va_sta_reslstm``: Huang et al. 2024 (Front. Neurorobot. 18:1353879), velocity-aware
  spatio-temporal attention residual LSTM.

The recurrent models expose ``self.rnn`` (``nn.LSTM`` / ``nn.GRU``, ``batch_first=True``,
``bias=True``) and ``self.head`` (``nn.Linear``) so that :mod:`invdyn_ros.learning.predictor` can
step the very same weights (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``) one sample at a time (the arithmetic of ``torch.lstm_cell`` / ``torch.gru_cell``).
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from invdyn_ros.errors import ConfigError

MODEL_KINDS: tuple[str, ...] = ('lstm', 'gru', 'mlp', 'va_sta_reslstm')

#: Rueckert et al. use at most two LSTM layers; deeper stacks are allowed for experiments.
MAX_RECURRENT_LAYERS = 4
#: Upper bound of ``velocity_sign_gain`` (scaled velocity units): beyond it the feature is a hard
#: sign that flips on sensor noise around zero velocity.
MAX_VELOCITY_SIGN_GAIN = 1000.0
#: Config fields added after checkpoints were first written: left out of ``config_to_dict`` while
#: at their default, so a model without them saves and loads exactly as before.
_FIELDS_OMITTED_AT_DEFAULT = {'velocity_sign_gain': 0.0}


# --------------------------------------------------------------------------------------------
# config validation helpers
# --------------------------------------------------------------------------------------------

def _positive_int(cfg: Any, name: str, maximum: int | None = None) -> None:
    """Check (and normalise to a plain ``int``) an integer field of a frozen config."""
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f'{type(cfg).__name__}.{name} must be an integer, got {value!r}')
    value = int(value)
    if value < 1 or (maximum is not None and value > maximum):
        upper = f'..{maximum}' if maximum is not None else ' or more'
        raise ConfigError(f'{type(cfg).__name__}.{name} must be in 1{upper}, got {value}')
    object.__setattr__(cfg, name, value)


def _dropout(cfg: Any, name: str = 'dropout') -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f'{type(cfg).__name__}.{name} must be a number, got {value!r}')
    value = float(value)
    if not 0.0 <= value < 1.0:  # also rejects NaN
        raise ConfigError(f'{type(cfg).__name__}.{name} must be in [0, 1), got {value}')
    object.__setattr__(cfg, name, value)


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LSTMConfig:
    """Stacked LSTM (Rueckert et al. 2017). ``dropout`` acts between layers, training only.

    ``velocity_sign_gain`` (0 = off, the paper's model): the cells also get ``tanh(gain * v)``
    per joint, ``v`` the *scaled* velocity, i.e. a smooth ``sign(q̇)`` -- the shape of Coulomb
    friction, which steps at every velocity reversal. From ``[q, q̇, q̈]`` alone a small network
    learns that step only smeared over a wide velocity band (it needs very large input weights);
    with ``gain`` 20 the feature reaches +-0.76 at +-5 % of the velocity's standard deviation.
    """

    n_joints: int
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    velocity_sign_gain: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _positive_int(self, 'n_joints')
        _positive_int(self, 'hidden_size')
        _positive_int(self, 'num_layers', MAX_RECURRENT_LAYERS)
        _dropout(self)
        gain = self.velocity_sign_gain
        if isinstance(gain, bool) or not isinstance(gain, numbers.Real) \
                or not 0.0 <= float(gain) <= MAX_VELOCITY_SIGN_GAIN:
            raise ConfigError(f'{type(self).__name__}.velocity_sign_gain must be a number in '
                              f'[0, {MAX_VELOCITY_SIGN_GAIN:g}] (0 = off), got {gain!r}')
        object.__setattr__(self, 'velocity_sign_gain', float(gain))

    @property
    def input_features(self) -> int:
        """Width of the cells' input per time step: 3n, plus n sign features when enabled."""
        return (4 if self.velocity_sign_gain > 0 else 3) * self.n_joints


@dataclass(frozen=True)
class GRUConfig(LSTMConfig):
    """Stacked GRU; same fields and limits as :class:`LSTMConfig`."""


@dataclass(frozen=True)
class MLPConfig:
    """One tanh hidden layer on the newest row (Wang et al.'s baseline)."""

    n_joints: int
    hidden_size: int = 64

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _positive_int(self, 'n_joints')
        _positive_int(self, 'hidden_size')


@dataclass(frozen=True)
class VASTAResLSTMConfig:
    """VA-STA-ResLSTM (Huang et al. 2024). ``attention_size``: width of the attention MLPs."""

    n_joints: int
    hidden_size: int = 64
    num_layers: int = 2
    attention_size: int = 32

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _positive_int(self, 'n_joints')
        _positive_int(self, 'hidden_size')
        _positive_int(self, 'num_layers', MAX_RECURRENT_LAYERS)
        _positive_int(self, 'attention_size')


ModelConfig = LSTMConfig | GRUConfig | MLPConfig | VASTAResLSTMConfig


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------

def _check_input(x: torch.Tensor, n_joints: int) -> None:
    """Shape errors here are programming errors upstream; fail loudly instead of broadcasting."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != 3 * n_joints or x.shape[1] < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f'expected a (B, L>=1, {3 * n_joints}) tensor of windows, got {shape}')


class _RecurrentModel(nn.Module):
    """``rnn`` over the window, last hidden state of the top layer, ``head`` to n torques."""

    kind = ''
    _rnn_class: type[nn.RNNBase] = nn.LSTM

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        n = config.n_joints
        self.rnn = self._rnn_class(
            input_size=config.input_features,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            bias=True,
            batch_first=True,
            # nn.LSTM warns on dropout with a single layer: it would do nothing anyway.
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden_size, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.config.n_joints)
        gain = self.config.velocity_sign_gain
        if gain > 0:
            n = self.config.n_joints
            x = torch.cat((x, torch.tanh(gain * x[..., n:2 * n])), dim=-1)
        out, _ = self.rnn(x)  # (B, L, H): top layer's hidden state at every step
        return self.head(out[:, -1])


class LSTMModel(_RecurrentModel):
    """Rueckert et al. 2017: ``nn.LSTM`` -> last hidden state -> ``nn.Linear``."""

    kind = 'lstm'
    _rnn_class = nn.LSTM


class GRUModel(_RecurrentModel):
    """The LSTM model with GRU cells (fewer parameters, a different inductive bias for the dual)."""

    kind = 'gru'
    _rnn_class = nn.GRU


class MLPModel(nn.Module):
    """Wang et al.'s baseline: ``Linear -> tanh -> Linear`` on the newest row ``x[:, -1]``.

    It sees no history; older rows of the window are ignored on purpose, so it measures what the
    recurrent models gain from the window.
    """

    kind = 'mlp'

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        n = config.n_joints
        self.hidden = nn.Linear(3 * n, config.hidden_size)
        self.head = nn.Linear(config.hidden_size, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.config.n_joints)
        return self.head(torch.tanh(self.hidden(x[:, -1])))


class VASTAResLSTMModel(nn.Module):
    """Velocity-aware spatio-temporal attention residual LSTM (Huang et al. 2024).

    With ``F = 3n`` input features, ``H = hidden_size``, ``A = attention_size``:

    1. **Spatial attention** (``self.spatial``): per time step, ``s = sigmoid(MLP(x_t))`` with
       ``MLP = Linear(F, A) -> tanh -> Linear(A, F)``; the input is re-weighted feature-wise,
       ``x'_t = s_t * x_t``, ``s`` in (0, 1). It lets the net down-weight noisy channels (e.g.
       the differentiated accelerations) per sample.
    2. **Residual LSTM** (``self.input_proj``, ``self.layers``): ``h^0 = Linear(F, H)(x')`` so the
       skip connections have matching shapes, then for each layer ``h^k = LSTM_k(h^{k-1}) +
       h^{k-1}`` (single-layer ``nn.LSTM`` modules). The skips ease optimisation of the stack.
    3. **Temporal attention** (``self.temporal``): a score per time step
       ``e_t = Linear(A, 1)(SELU(Linear(H, A)(h_t)))``, ``w = softmax_t(e)`` (sums to 1 over the
       window), ``h_att = sum_t w_t h_t``.
    4. **Velocity-aware fusion** (``self.velocity_gate``): ``g = sigmoid(Linear(n, H)(qd_newest))``
       from the *unattended* velocity features of the newest row, ``h = g * h_last + (1 - g) *
       h_att``: at speed the current state dominates the torque; near rest (friction, stiction,
       reversal) the history matters more, and the gate learns that mixture.

    Then ``self.head = Linear(H, n)``. ``forward(x, return_attention=True)`` also returns a dict
    with ``spatial (B, L, F)``, ``temporal (B, L)`` and ``velocity_gate (B, H)``.

    Not streamable with recurrent cells (attention needs the whole window), so the predictor runs
    the full forward for this kind.
    """

    kind = 'va_sta_reslstm'

    def __init__(self, config: VASTAResLSTMConfig) -> None:
        super().__init__()
        self.config = config
        n, h, a = config.n_joints, config.hidden_size, config.attention_size
        f = 3 * n
        self.spatial = nn.Sequential(nn.Linear(f, a), nn.Tanh(), nn.Linear(a, f), nn.Sigmoid())
        self.input_proj = nn.Linear(f, h)
        self.layers = nn.ModuleList(
            nn.LSTM(h, h, num_layers=1, bias=True, batch_first=True) for _ in range(config.num_layers)
        )
        self.temporal = nn.Sequential(nn.Linear(h, a), nn.SELU(), nn.Linear(a, 1))
        self.velocity_gate = nn.Linear(n, h)
        self.head = nn.Linear(h, n)

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = self.config.n_joints
        _check_input(x, n)
        s = self.spatial(x)                       # (B, L, F) in (0, 1)
        hseq = self.input_proj(x * s)             # (B, L, H)
        for lstm in self.layers:
            out, _ = lstm(hseq)
            hseq = out + hseq                     # residual connection
        scores = self.temporal(hseq).squeeze(-1)  # (B, L)
        w = torch.softmax(scores, dim=1)
        h_att = torch.einsum('bl,blh->bh', w, hseq)
        h_last = hseq[:, -1]
        g = torch.sigmoid(self.velocity_gate(x[:, -1, n:2 * n]))  # (B, H)
        y = self.head(g * h_last + (1.0 - g) * h_att)
        if return_attention:
            return y, {'spatial': s, 'temporal': w, 'velocity_gate': g}
        return y


# --------------------------------------------------------------------------------------------
# registry, factory, checkpoint helpers
# --------------------------------------------------------------------------------------------

CONFIG_CLASSES: dict[str, type] = {
    'lstm': LSTMConfig,
    'gru': GRUConfig,
    'mlp': MLPConfig,
    'va_sta_reslstm': VASTAResLSTMConfig,
}
MODEL_CLASSES: dict[str, type[nn.Module]] = {
    'lstm': LSTMModel,
    'gru': GRUModel,
    'mlp': MLPModel,
    'va_sta_reslstm': VASTAResLSTMModel,
}


def _check_kind(kind: str) -> None:
    if kind not in CONFIG_CLASSES:
        raise ConfigError(f'model kind must be one of {MODEL_KINDS}, got {kind!r}')


def make_config(kind: str, n_joints: int, /, **overrides: Any) -> ModelConfig:
    """The config of ``kind`` with ``overrides``; an unknown kind or field raises ConfigError."""
    _check_kind(kind)
    cls = CONFIG_CLASSES[kind]
    fields = {f.name for f in dataclasses.fields(cls)}
    if 'n_joints' in overrides:
        if overrides['n_joints'] != n_joints:
            raise ConfigError(
                f'model option n_joints={overrides["n_joints"]!r} contradicts n_joints={n_joints!r}')
        overrides = {k: v for k, v in overrides.items() if k != 'n_joints'}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(
            f'unknown option(s) {unknown} for model {kind!r}; accepted: {sorted(fields - {"n_joints"})}')
    return cls(n_joints=n_joints, **overrides)


def build_model(kind: str, n_joints: int, /, **overrides: Any) -> nn.Module:
    """A freshly initialised model of ``kind`` for ``n_joints`` joints (``3 * n_joints`` inputs).

    ``overrides`` are config fields (e.g. ``hidden_size=32``); unknown ones raise ConfigError.
    ``kind`` and ``n_joints`` are positional-only so that a stray ``n_joints`` in a user's
    ``model_options`` dict is reported as a ConfigError (if it contradicts) rather than a TypeError.
    """
    config = make_config(kind, n_joints, **overrides)
    return MODEL_CLASSES[kind](config)


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """Plain-Python dict of a config (ints/floats only: safe for ``torch.load(weights_only=True)``)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise ConfigError(f'config must be a model config dataclass, got {type(cfg).__name__}')
    d = dataclasses.asdict(cfg)
    for name, default in _FIELDS_OMITTED_AT_DEFAULT.items():
        if name in d and d[name] == default:
            del d[name]
    return d


def model_from_dict(kind: str, d: Mapping[str, Any]) -> nn.Module:
    """Rebuild an (untrained) model from ``kind`` and ``config_to_dict(model.config)``."""
    _check_kind(kind)
    if not isinstance(d, Mapping) or 'n_joints' not in d:
        raise ConfigError(f'model config for {kind!r} must be a dict with n_joints, got {d!r}')
    options = dict(d)
    n_joints = options.pop('n_joints')
    return build_model(kind, n_joints, **options)
