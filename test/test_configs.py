"""The shipped parameter files (config/*.yaml): the rules they share, checked without a node.

Every file must load as the node's parameters (``PipelineConfig.from_params`` accepts it), and
the dual identifier's window must cover 1 s of joint states at the rate the file is written for
(the ``dual_window`` description; README "The dual's window": on the UR10 recording the 4 s window
that config/ur10.yaml had made the dual worse than its black-box network alone). A new config
must state its rate here.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from invdyn_ros.pipeline.parameters import PARAMETER_DOCS
from invdyn_ros.pipeline.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parents[1]

#: The joint-state rate (Hz) each shipped file is written for (its header says so).
NOMINAL_RATE_HZ = {'kuka_lwr.yaml': 1000.0, 'franka.yaml': 1000.0, 'ur5.yaml': 500.0,
                   'ur10.yaml': 125.0}
#: Files that are laid over another (invdyn_demo: config/demo.yaml on config/ur5.yaml).
OVERLAYS = {'demo.yaml': 'ur5.yaml'}
#: The dual identifier's window in time, in every shipped file.
DUAL_WINDOW_S = 1.0


def params(name: str) -> dict:
    """A file's parameters, laid over its base if it is an overlay."""
    own = yaml.safe_load((REPO / 'config' / name).read_text())['invdyn_node']['ros__parameters']
    return {**params(OVERLAYS[name]), **own} if name in OVERLAYS else own


def test_every_shipped_config_states_its_rate():
    assert sorted(p.name for p in (REPO / 'config').glob('*.yaml')) == \
        sorted(list(NOMINAL_RATE_HZ) + list(OVERLAYS))


@pytest.mark.parametrize('name', sorted(list(NOMINAL_RATE_HZ) + list(OVERLAYS)))
def test_a_shipped_config_is_valid_node_parameters(name):
    p = params(name)
    assert set(p) <= set(PARAMETER_DOCS), set(p) - set(PARAMETER_DOCS)
    # without the physics prior: the URDF is the user's (test_node.py starts each with one)
    PipelineConfig.from_params(dict(p, prior='none', feedforward_mode='total')).validate()


@pytest.mark.parametrize('name', sorted(list(NOMINAL_RATE_HZ) + list(OVERLAYS)))
def test_the_dual_window_is_one_second_at_the_configs_rate(name):
    rate = NOMINAL_RATE_HZ[OVERLAYS.get(name, name)]
    assert params(name)['dual_window'] == round(DUAL_WINDOW_S * rate)
