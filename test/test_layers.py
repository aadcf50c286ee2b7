"""The package's folders are its layers (``invdyn_ros/__init__.py``): a module imports only from its
own folder and the layers below it, and only ``ros/``, ``sim/`` and ``cli/`` import rclpy or ROS
message packages. Read from the source (every import, also those inside functions and under
``TYPE_CHECKING``), and checked once at run time in a fresh interpreter."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'invdyn_ros'
TOP = {'errors', 'atomic', 'metrics', 'stopflag'}
# What each layer may import from, besides itself and the top level.
BELOW = {
    'stages': set(),
    'learning': {'stages'},
    'pipeline': {'stages', 'learning'},
    'ros': {'stages', 'learning', 'pipeline'},
    'offline': {'stages', 'learning', 'pipeline'},
    'sim': {'stages', 'learning', 'pipeline', 'ros', 'offline'},
    'cli': {'stages', 'learning', 'pipeline', 'ros', 'offline', 'sim'},
}
ROS_PACKAGES = ('rclpy', 'rosidl_runtime_py', 'rcl_interfaces', 'ament_index_python', 'launch',
                'launch_ros', 'std_msgs', 'sensor_msgs', 'std_srvs', 'trajectory_msgs',
                'diagnostic_msgs', 'lifecycle_msgs', 'builtin_interfaces')
ROS_LAYERS = {'ros', 'sim', 'cli'}


def _layer(module: str) -> str:
    """``invdyn_ros.stages.physics`` -> ``stages``; a top-level module -> ``top``."""
    parts = module.split('.')
    if len(parts) >= 3 or (len(parts) == 2 and parts[1] in BELOW):
        return parts[1]
    assert len(parts) == 1 or parts[1] in TOP, f'{module}: a module outside every layer'
    return 'top'


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
        out['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                name = '.'.join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ''
            found.add(name)
            if name in ('invdyn_ros', *(f'invdyn_ros.{layer}' for layer in BELOW)):
                found.update(f'{name}.{a.name}' for a in node.names)
    return found


MODULES = _modules()


def test_every_module_is_in_a_layer():
    layers = {_layer(m) for m in MODULES}
    assert layers == {'top', *BELOW}
    assert len(MODULES) > 60                    # the walk found the package


@pytest.mark.parametrize('module', sorted(MODULES))
def test_imports_stay_in_their_layer(module):
    layer = _layer(module)
    allowed = {'top', layer} | BELOW.get(layer, set())
    for name in _imports(module, MODULES[module]):
        root = name.split('.')[0]
        if root == 'invdyn_ros':
            if name == 'invdyn_ros' or name.split('.')[1] in ('__version__',):
                continue
            target = _layer(name)
            assert target in allowed, f'{module} ({layer}) imports {name} ({target})'
        elif root in ROS_PACKAGES:
            assert layer in ROS_LAYERS, f'{module} ({layer}) imports {name}'
        elif root == 'torch':
            assert layer not in ('top', 'stages'), f'{module} ({layer}) imports torch'


def test_the_core_imports_no_ros_at_run_time():
    """Importing every module of the core and the offline tools pulls in no ROS package."""
    core = [m for m in MODULES if _layer(m) not in ROS_LAYERS]
    code = ('import sys\n'
            + ''.join(f'import {m}\n' for m in core)
            + f'print(sorted(m for m in sys.modules if m.split(".")[0] in {ROS_PACKAGES!r}))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'
