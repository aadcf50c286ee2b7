"""Known-answer tests of the inverse-dynamics networks (shapes, gradients, streaming equivalence)."""
import dataclasses
import io

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from invdyn_ros.errors import ConfigError
from invdyn_ros.learning.models import (MODEL_KINDS, GRUConfig, LSTMConfig, MLPConfig,
                                        VASTAResLSTMConfig, build_model, config_to_dict,
                                        model_from_dict)
from invdyn_ros.learning.scaling import RunningScaler
from invdyn_ros.metrics import nmse

N = 3  # joints -> 9 features per row
L = 6


def _x(batch=4, length=L, n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, 3 * n, generator=g)


@pytest.mark.parametrize('kind', MODEL_KINDS)
def test_output_shape_and_kind(kind):
    torch.manual_seed(0)
    model = build_model(kind, N, hidden_size=16)
    y = model(_x())
    assert y.shape == (4, N)
    assert torch.isfinite(y).all()
    assert model.kind == kind
    assert model.config.n_joints == N and model.config.hidden_size == 16
    # windows of length 1 are legal too
    assert model(_x(batch=2, length=1)).shape == (2, N)


@pytest.mark.parametrize('kind', MODEL_KINDS)
def test_gradients_reach_every_parameter(kind):
    torch.manual_seed(0)
    model = build_model(kind, N, hidden_size=8)
    loss = model(_x()).square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize('kind', MODEL_KINDS)
def test_rejects_wrong_input_shape(kind):
    model = build_model(kind, N, hidden_size=8)
    with pytest.raises(ValueError):
        model(torch.zeros(4, L, 3 * N + 1))
    with pytest.raises(ValueError):
        model(torch.zeros(L, 3 * N))


def _manual_unroll(model, x, cell):
    """Step torch.lstm_cell / torch.gru_cell over time with the model's own weights."""
    rnn = model.rnn
    b = x.shape[0]
    hid = rnn.hidden_size
    h = [torch.zeros(b, hid) for _ in range(rnn.num_layers)]
    c = [torch.zeros(b, hid) for _ in range(rnn.num_layers)]
    for t in range(x.shape[1]):
        inp = x[:, t]
        for k in range(rnn.num_layers):
            w = [getattr(rnn, f'{name}_l{k}')
                 for name in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')]
            if cell == 'lstm':
                h[k], c[k] = torch.lstm_cell(inp, (h[k], c[k]), *w)
            else:
                h[k] = torch.gru_cell(inp, h[k], *w)
            inp = h[k]
    return model.head(inp)


@pytest.mark.parametrize('kind,num_layers', [('lstm', 1), ('lstm', 2), ('gru', 2), ('lstm', 3)])
def test_recurrent_model_equals_manual_cell_unroll(kind, num_layers):
    # The streaming predictor relies on exactly this equivalence.
    torch.manual_seed(1)
    model = build_model(kind, N, hidden_size=12, num_layers=num_layers, dropout=0.2).eval()
    x = _x(batch=5, length=7)
    with torch.no_grad():
        full = model(x)
        manual = _manual_unroll(model, x, kind)
    torch.testing.assert_close(full, manual, rtol=1e-5, atol=1e-6)
    assert model.rnn.batch_first and model.rnn.bias
    assert isinstance(model.head, torch.nn.Linear)


def test_mlp_uses_only_newest_row():
    torch.manual_seed(0)
    model = build_model('mlp', N, hidden_size=10)
    x = _x()
    y = model(x)
    x2 = x.clone()
    x2[:, :-1] = torch.randn_like(x2[:, :-1]) * 100.0
    torch.testing.assert_close(model(x2), y)
    # and the newest row does matter
    x3 = x.clone()
    x3[:, -1] += 1.0
    assert not torch.allclose(model(x3), y)
    # a window of length 1 with the newest row gives the same answer
    torch.testing.assert_close(model(x[:, -1:]), y)


def test_mlp_is_one_tanh_hidden_layer():
    torch.manual_seed(0)
    model = build_model('mlp', N, hidden_size=10)
    x = _x()
    hidden = torch.tanh(x[:, -1] @ model.hidden.weight.T + model.hidden.bias)
    torch.testing.assert_close(model(x), hidden @ model.head.weight.T + model.head.bias)


def test_va_sta_reslstm_attention_properties():
    torch.manual_seed(0)
    model = build_model('va_sta_reslstm', N, hidden_size=16, attention_size=8)
    x = _x(batch=5) * 5.0
    y, att = model(x, return_attention=True)
    torch.testing.assert_close(y, model(x))
    s, w, g = att['spatial'], att['temporal'], att['velocity_gate']
    assert s.shape == (5, L, 3 * N)
    assert ((s > 0) & (s < 1)).all()
    assert w.shape == (5, L)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(dim=1), torch.ones(5))
    assert g.shape == (5, 16)
    assert ((g > 0) & (g < 1)).all()


def test_va_sta_reslstm_velocity_gate_reads_newest_velocity():
    # The gate depends only on qd of the newest row: changing q/qdd there leaves it unchanged.
    torch.manual_seed(0)
    model = build_model('va_sta_reslstm', N, hidden_size=8, attention_size=4)
    x = _x()
    _, a = model(x, return_attention=True)
    x2 = x.clone()
    x2[:, -1, :N] += 3.0
    x2[:, -1, 2 * N:] -= 3.0
    x2[:, :-1] = 0.0
    _, b = model(x2, return_attention=True)
    torch.testing.assert_close(a['velocity_gate'], b['velocity_gate'])
    x3 = x.clone()
    x3[:, -1, N:2 * N] += 3.0
    _, c = model(x3, return_attention=True)
    assert not torch.allclose(a['velocity_gate'], c['velocity_gate'])


def test_va_sta_reslstm_fusion_by_hand():
    # Recompute the forward pass from its documented parts to pin the architecture down.
    torch.manual_seed(2)
    m = build_model('va_sta_reslstm', N, hidden_size=8, num_layers=2, attention_size=4)
    x = _x(batch=3)
    s = torch.sigmoid(m.spatial[2](torch.tanh(m.spatial[0](x))))
    h = m.input_proj(x * s)
    for lstm in m.layers:
        h = lstm(h)[0] + h
    w = torch.softmax(m.temporal[2](torch.nn.functional.selu(m.temporal[0](h))).squeeze(-1), dim=1)
    h_att = (w[..., None] * h).sum(1)
    g = torch.sigmoid(m.velocity_gate(x[:, -1, N:2 * N]))
    expected = m.head(g * h[:, -1] + (1 - g) * h_att)
    torch.testing.assert_close(m(x), expected)


@pytest.mark.parametrize('kind', MODEL_KINDS)
def test_config_and_weights_round_trip(kind):
    torch.manual_seed(0)
    model = build_model(kind, N, hidden_size=8).eval()
    buf = io.BytesIO()
    torch.save({'kind': model.kind, 'config': config_to_dict(model.config),
                'state': model.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    clone = model_from_dict(ckpt['kind'], ckpt['config']).eval()
    assert clone.config == model.config
    clone.load_state_dict(ckpt['state'])
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x))


def test_defaults_follow_the_contract():
    assert LSTMConfig(7) == LSTMConfig(n_joints=7, hidden_size=64, num_layers=2, dropout=0.0)
    assert GRUConfig(7).num_layers == 2
    assert MLPConfig(7).hidden_size == 64
    assert VASTAResLSTMConfig(7).attention_size == 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        LSTMConfig(7).hidden_size = 3
    assert isinstance(build_model('gru', 2).rnn, torch.nn.GRU)
    assert isinstance(build_model('lstm', 2).rnn, torch.nn.LSTM)


@pytest.mark.parametrize('kind,options,field', [
    ('lstm', {'hidden_size': 0}, 'hidden_size'),
    ('lstm', {'num_layers': 5}, 'num_layers'),
    ('gru', {'num_layers': 0}, 'num_layers'),
    ('lstm', {'dropout': 1.0}, 'dropout'),
    ('lstm', {'dropout': float('nan')}, 'dropout'),
    ('lstm', {'hidden_size': 2.5}, 'hidden_size'),
    ('lstm', {'hidden_size': True}, 'hidden_size'),
    ('mlp', {'num_layers': 2}, 'num_layers'),
    ('va_sta_reslstm', {'attention_size': -1}, 'attention_size'),
    ('lstm', {'hiddensize': 3}, 'hiddensize'),
    ('lstm', {'velocity_sign_gain': -1.0}, 'velocity_sign_gain'),
    ('gru', {'velocity_sign_gain': float('nan')}, 'velocity_sign_gain'),
    ('lstm', {'velocity_sign_gain': 1e6}, 'velocity_sign_gain'),
    ('lstm', {'velocity_sign_gain': True}, 'velocity_sign_gain'),
    ('mlp', {'velocity_sign_gain': 20.0}, 'velocity_sign_gain'),
])
def test_invalid_options_raise_config_error_naming_the_field(kind, options, field):
    with pytest.raises(ConfigError, match=field):
        build_model(kind, N, **options)


def test_invalid_kind_and_joint_count():
    with pytest.raises(ConfigError, match='transformer'):
        build_model('transformer', N)
    with pytest.raises(ConfigError, match='n_joints'):
        build_model('lstm', 0)
    with pytest.raises(ConfigError, match='n_joints'):
        build_model('lstm', 3, n_joints=4)
    with pytest.raises(ConfigError, match='n_joints'):
        model_from_dict('lstm', {'hidden_size': 3})
    with pytest.raises(ConfigError):
        model_from_dict('nope', {'n_joints': 3})


@pytest.mark.parametrize('kind', MODEL_KINDS)
def test_every_kind_learns_a_known_dynamics(kind):
    # tau = 2 qdd + 0.5 qd + 3 sin(q) on standardized data: the train-mean predictor scores nMSE 1,
    # every model must get far below that in a few hundred Adam steps.
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: extra threads only contend with other test processes
    try:
        _train_and_score(kind)
    finally:
        torch.set_num_threads(threads)


def _train_and_score(kind):
    n, length = 2, 5
    t = np.arange(1500) * 0.01
    q = np.sin(np.outer(t, [1.0, 1.7]) + [0.0, 1.0])
    qd = np.gradient(q, 0.01, axis=0)
    qdd = np.gradient(qd, 0.01, axis=0)
    tau = 2.0 * qdd + 0.5 * qd + 3.0 * np.sin(q)
    feats = np.hstack([q, qd, qdd])
    sx, sy = RunningScaler(3 * n).fit(feats), RunningScaler(n).fit(tau)
    windows = sliding_window_view(feats, (length, 3 * n))[:, 0]  # (N-L+1, L, 3n), oldest first
    x = torch.tensor(sx.transform(windows), dtype=torch.float32)
    y_true = tau[length - 1:]
    y = torch.tensor(sy.transform(y_true), dtype=torch.float32)
    model = build_model(kind, n, hidden_size=16)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(250):
        idx = torch.randint(0, len(x), (64,))
        opt.zero_grad()
        (model(x[idx]) - y[idx]).square().mean().backward()
        opt.step()
    with torch.no_grad():
        pred = sy.inverse_transform(model(x).double()).numpy()
    assert nmse(y_true, pred, sy.mean, sy.std).max() < 0.05


@pytest.mark.parametrize('kind', ['lstm', 'gru'])
def test_velocity_sign_features_feed_the_cells(kind):
    """velocity_sign_gain > 0: the cells see [x, tanh(gain * v)] (4n inputs per step); the same
    model without the features is the paper's (3n inputs)."""
    torch.manual_seed(0)
    plain = build_model(kind, N, hidden_size=8)
    model = build_model(kind, N, hidden_size=8, velocity_sign_gain=20.0).eval()
    assert plain.rnn.input_size == 3 * N and model.config.input_features == 4 * N
    assert model.rnn.input_size == 4 * N
    x = _x()
    feats = torch.cat((x, torch.tanh(20.0 * x[..., N:2 * N])), dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.head(model.rnn(feats)[0][:, -1]))
        # the features are a sharp step at zero velocity: flipping one velocity's sign near zero
        # changes the output much more than the same-size change away from zero
        x0, x1, x2 = x.clone(), x.clone(), x.clone()
        x0[:, :, N] = -0.02
        x1[:, :, N] = 0.02
        x2[:, :, N] = 1.0
        x2b = x2.clone()
        x2b[:, :, N] = 1.04
        near = (model(x1) - model(x0)).abs().max()
        far = (model(x2b) - model(x2)).abs().max()
    assert near > 5 * far


def test_new_config_fields_keep_old_checkpoints_loadable():
    """config_to_dict leaves velocity_sign_gain out while it is 0, so a model without sign features
    is saved exactly as before the field existed (and old configs rebuild); set, it is kept."""
    assert config_to_dict(LSTMConfig(7)) == {'n_joints': 7, 'hidden_size': 64, 'num_layers': 2,
                                             'dropout': 0.0}
    d = config_to_dict(GRUConfig(7, velocity_sign_gain=15))
    assert d['velocity_sign_gain'] == 15.0
    assert model_from_dict('gru', d).config == GRUConfig(7, velocity_sign_gain=15.0)
    assert model_from_dict('lstm', {'n_joints': 7, 'hidden_size': 64, 'num_layers': 2,
                                    'dropout': 0.0}).config.velocity_sign_gain == 0.0
