"""LearnerConfig: validation names the bad parameter; plain-dict round trip."""
import pytest
from test_learner import small_config

from invdyn_ros.errors import ConfigError
from invdyn_ros.learning.learner_config import LearnerConfig


@pytest.mark.parametrize('kw,name', [
    (dict(model='transformer'), 'model'), (dict(window=0), 'window'),
    (dict(recent_capacity=30000), 'recent_capacity'), (dict(learning_rate=-1.0), 'learning_rate'),
    (dict(learning_rate=float('nan')), 'learning_rate'), (dict(recent_fraction=1.5), 'recent_fraction'),
    (dict(plateau_factor=1.0), 'plateau_factor'), (dict(divergence_factor=0.5), 'divergence_factor'),
    (dict(model_options={'bogus': 1}), 'bogus'), (dict(batch_size=True), 'batch_size'),
    (dict(lr_restart_factor=0.5), 'lr_restart_factor'),
])
def test_config_validation_names_the_parameter(kw, name):
    with pytest.raises(ConfigError, match=name):
        LearnerConfig(**kw).validate()


def test_config_dict_roundtrip():
    cfg = small_config(seed=7)
    assert LearnerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match='nonsense'):
        LearnerConfig.from_dict({**cfg.to_dict(), 'nonsense': 1})


@pytest.mark.parametrize('bad', [1.0, -0.1, float('nan'), 'high'])
def test_weight_ema_decay_is_validated(bad):
    with pytest.raises(ConfigError, match='weight_ema_decay'):
        small_config(weight_ema_decay=bad).validate()
