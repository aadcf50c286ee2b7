"""How the closed-loop demo starts invdyn_node: its parameters and its child process.

The node's parameters are ``config/ur5.yaml``'s (or another base file's), the simulated arm's
joints and limits, the demo's own values (``config/demo.yaml``, :data:`DEMO_NODE_PARAMETERS`; why
each value: ``docs/DEMO.md``), the URDF perturbed by :data:`DEMO_URDF_PERTURBATION`, and the
user's ``--node-param`` overrides. The node runs as ``<this python> -m invdyn_ros.ros.node`` through
the supervisor's :data:`~invdyn_ros.sim.supervisor.CHILD_BOOT`, so it dies with the demo.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from invdyn_ros.errors import ConfigError
from invdyn_ros.sim.supervisor import CHILD_BOOT, ChildProcess

__all__ = ['NODE_NAME', 'NODE_MODULE', 'DEMO_NODE_PARAMETERS', 'DEMO_URDF_PERTURBATION',
           'DEMO_PARAMS_FILE', 'find_params_file', 'node_parameters', 'load_base_parameters',
           'write_params_file', 'start_node', 'package_root']

NODE_NAME = 'invdyn_node'
NODE_MODULE = 'invdyn_ros.ros.node'
#: How wrong the demo's URDF is: masses and inertias scaled by factors in [1 - x, 1 + x].
DEMO_URDF_PERTURBATION = 0.25


def package_root() -> Path:
    """The folder that holds the imported invdyn_ros package (for the child's PYTHONPATH)."""
    import invdyn_ros
    return Path(invdyn_ros.__file__).resolve().parent.parent


def find_params_file(name: str = 'ur5.yaml') -> Path | None:
    """config/<name>: from the source tree this package was imported from, else the installed
    share folder (``<prefix>/share/invdyn_ros/config``)."""
    candidates = [package_root() / 'config' / name,
                  Path(sys.prefix) / 'share' / 'invdyn_ros' / 'config' / name]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('invdyn_ros')) / 'config' / name)
    except Exception:  # noqa: BLE001 - no ament index / not installed: just not this way
        pass
    for path in candidates:
        if path.is_file():
            return path
    return None


def node_parameters(joint_names: Sequence[str], effort_limits: Sequence[float], seed: int,
                    base: dict[str, Any] | None, overrides: dict[str, Any],
                    robot_urdf: str | None = None) -> dict[str, Any]:
    """invdyn_node's parameters for the demo: ``base`` (config/ur5.yaml's) + the simulated arm's
    joints and limits + DEMO_NODE_PARAMETERS + ``overrides``; ``robot_urdf`` (the simulated
    robot's URDF) becomes the node's robot_description, perturbed as DEMO_URDF_PERTURBATION
    says (seeded by ``seed``)."""
    from invdyn_ros.sim.arm import perturbed_urdf_model

    params = dict(base or {})
    params.update(joint_names=list(joint_names),
                  torque_limits=[float(x) for x in effort_limits],
                  effort_scale=[1.0] * len(joint_names), seed=int(seed))
    if not DEMO_NODE_PARAMETERS:
        raise ConfigError('config/demo.yaml (the demo\'s node parameters) not found beside the '
                          'package or in its share folder')
    params.update(DEMO_NODE_PARAMETERS)
    if robot_urdf is not None:
        params['robot_description'] = perturbed_urdf_model(robot_urdf, DEMO_URDF_PERTURBATION,
                                                           int(seed))
    else:
        params.update(prior='none', feedforward_mode='total')
    params.update(overrides)
    return params


def load_base_parameters(path: Path | None) -> dict[str, Any]:
    """The ``ros__parameters`` of ``invdyn_node`` (or of the first node) in a params file."""
    if path is None:
        return {}
    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    if not isinstance(doc, dict):
        raise ConfigError(f'{path}: not a ROS 2 params file')
    for key in (NODE_NAME, '/' + NODE_NAME, '/**', '**'):
        section = doc.get(key)
        if isinstance(section, dict) and isinstance(section.get('ros__parameters'), dict):
            return dict(section['ros__parameters'])
    for section in doc.values():
        if isinstance(section, dict) and isinstance(section.get('ros__parameters'), dict):
            return dict(section['ros__parameters'])
    raise ConfigError(f'{path}: no ros__parameters section')


DEMO_PARAMS_FILE = find_params_file('demo.yaml')
#: Node parameters the demo sets on top of config/ur5.yaml (config/demo.yaml; why each value:
#: docs/DEMO.md; ``--node-param`` overrides these). joint_names, torque_limits = the simulated
#: model's effort limits, effort_scale = 1 (the simulator reports joint torque, not motor current)
#: and seed come from the arm and --seed.
DEMO_NODE_PARAMETERS: dict[str, Any] = load_base_parameters(DEMO_PARAMS_FILE)


def write_params_file(path: Path, params: dict[str, Any]) -> None:
    with open(path, 'w') as f:
        yaml.safe_dump({NODE_NAME: {'ros__parameters': params}}, f, sort_keys=True)


def start_node(params_file: Path, env: dict[str, str], log_path: Path) -> ChildProcess:
    """invdyn_node as ``<this python> -m invdyn_ros.ros.node`` (the same interpreter and the same
    copy of the package as the demo: an installed ``invdyn_node`` script could be a different one),
    through :data:`CHILD_BOOT` so it dies with the demo."""
    env = dict(env)
    root = str(package_root())
    env['PYTHONPATH'] = os.pathsep.join([root] + [p for p in env.get('PYTHONPATH', '').split(
        os.pathsep) if p and p != root])
    env.setdefault('PYTHONUNBUFFERED', '1')
    cmd = [sys.executable, '-c', CHILD_BOOT, str(os.getpid()), NODE_MODULE,
           '--ros-args', '--params-file', str(params_file), '-r', f'__node:={NODE_NAME}']
    return ChildProcess(NODE_NAME, cmd, env, log_path)
