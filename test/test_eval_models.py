"""eval_models: the evaluator's model names, parse_models and each model's node parameters."""
import pytest

from invdyn_ros.errors import ConfigError
from invdyn_ros.offline.eval_models import MODELS, parse_models, pipeline_params


def test_parse_models():
    assert parse_models('naive, lstm,naive') == ['naive', 'lstm']
    assert parse_models(['dual']) == ['dual']
    assert set(MODELS) == {'lstm', 'gru', 'mlp', 'va_sta_reslstm', 'gp', 'naive', 'dual',
                           'rnea', 'identified', 'residual_lstm', 'residual_gru',
                           'residual_mlp', 'residual_va_sta_reslstm'}
    for bad in ('svm', 'lstm,,foo', ''):
        with pytest.raises(ConfigError):
            parse_models(bad)


def test_pipeline_params_say_what_each_model_runs():
    base = {'window': 5, 'prior': 'none', 'seed': 9}
    p = pipeline_params(base, 'gru', ('a', 'b'), 3)
    assert (p['model'], p['dual_enabled'], p['prior']) == ('gru', False, 'none')
    assert p['joint_names'] == ['a', 'b'] and p['seed'] == 3 and p['window'] == 5
    p = pipeline_params({**base, 'prior': 'rnea'}, 'mlp', ('a',), 0)
    assert p['prior'] == 'none'                       # a black-box network runs without a prior
    p = pipeline_params(base, 'residual_va_sta_reslstm', ('a',), 0)
    assert (p['model'], p['dual_enabled'], p['prior']) == ('va_sta_reslstm', False, 'rnea')
    assert pipeline_params(base, 'dual', ('a',), 0)['prior'] == 'none'   # no URDF: no prior
    with_urdf = pipeline_params({**base, 'urdf_path': '/x.urdf'}, 'dual', ('a',), 0)
    assert with_urdf['dual_enabled'] is True and with_urdf['prior'] == 'rnea'
    assert base == {'window': 5, 'prior': 'none', 'seed': 9}   # the caller's mapping is kept
