"""The installed package is findable the way `ros2 run` and launch_ros find it.

`ros2 run PKG EXE` looks PKG up in the ament index on AMENT_PREFIX_PATH and runs
<prefix>/lib/PKG/EXE. A pip install has no ament index unless setup.py's data_files put it there,
so this checks the real installed layout in the test environment's prefix (sys.prefix: `make venv`
installs the package non-editable into .venv).
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PREFIX = Path(sys.prefix)
SETUP = (REPO / 'setup.py').read_text()


def _executables() -> list[str]:
    tree = ast.parse(SETUP)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'EXECUTABLES':
            return list(ast.literal_eval(node.value).keys())
    raise AssertionError('EXECUTABLES not found in setup.py')


@pytest.fixture(scope='module')
def installed():
    marker = PREFIX / 'share/ament_index/resource_index/packages/invdyn_ros'
    if not marker.exists():
        pytest.fail('invdyn_ros is not installed in %s: run `make venv` (non-editable install)' % PREFIX)
    return PREFIX


def test_ament_index_resolves_package(installed):
    env = dict(os.environ, AMENT_PREFIX_PATH=str(installed))
    code = ('from ament_index_python.packages import get_package_prefix, get_package_share_directory;'
            'print(get_package_prefix("invdyn_ros")); print(get_package_share_directory("invdyn_ros"))')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert Path(out[0]) == installed
    share = Path(out[1])
    assert (share / 'package.xml').is_file()
    assert sorted(p.name for p in (share / 'config').glob('*.yaml')) == \
        sorted(p.name for p in (REPO / 'config').glob('*.yaml'))
    assert sorted(p.name for p in (share / 'launch').glob('*.launch.py')) == \
        sorted(p.name for p in (REPO / 'launch').glob('*.launch.py'))


@pytest.mark.parametrize('exe', _executables())
def test_every_executable_runs_through_its_lib_shim(installed, exe):
    shim = installed / 'lib' / 'invdyn_ros' / exe
    assert shim.is_file() and os.access(shim, os.X_OK), shim
    assert (installed / 'bin' / exe).is_file(), 'console script missing for %s' % exe
    # --help must work for every tool; it exercises the shim -> bin -> entry point chain.
    proc = subprocess.run([str(shim), '--help'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'usage' in (proc.stdout + proc.stderr).lower()


def test_package_xml_names_the_package():
    text = (REPO / 'package.xml').read_text()
    assert '<name>invdyn_ros</name>' in text
    assert '<build_type>ament_python</build_type>' in text


# ------------------------------------------------------------------ dependencies (package.xml)
#: third-party top-level module -> rosdep key (checked against ros/rosdistro: rosdep/python.yaml
#: for python3-*, the distribution.yaml of humble/jazzy/kilted/rolling for ROS packages)
ROSDEP_KEYS = {
    'rclpy': 'rclpy', 'builtin_interfaces': 'builtin_interfaces',
    'rcl_interfaces': 'rcl_interfaces', 'sensor_msgs': 'sensor_msgs', 'std_msgs': 'std_msgs',
    'std_srvs': 'std_srvs', 'trajectory_msgs': 'trajectory_msgs',
    'diagnostic_msgs': 'diagnostic_msgs', 'lifecycle_msgs': 'lifecycle_msgs',
    'ament_index_python': 'ament_index_python',
    'launch': 'launch', 'launch_ros': 'launch_ros', 'pinocchio': 'pinocchio',
    'numpy': 'python3-numpy', 'scipy': 'python3-scipy', 'yaml': 'python3-yaml',
    'torch': 'python3-torch', 'sklearn': 'python3-sklearn', 'matplotlib': 'python3-matplotlib',
    'tqdm': 'python3-tqdm', 'rosbags': 'python3-rosbags-pip',
}
#: optional modules: the code runs without them (each import is guarded or only on one path)
OPTIONAL = {
    'numba': 'python3-numba',        # kernels.py falls back to numpy; a conditional exec_depend
    'example_robot_data': None,      # the simulator's UR models; no rosdep key: pip extra `sim`
}
#: module -> PyPI distribution in setup.py (install_requires or an extra)
PIP_NAMES = {'numpy': 'numpy', 'scipy': 'scipy', 'yaml': 'PyYAML', 'torch': 'torch',
             'sklearn': 'scikit-learn', 'matplotlib': 'matplotlib', 'tqdm': 'tqdm',
             'rosbags': 'rosbags', 'pinocchio': 'pin', 'numba': 'numba',
             'example_robot_data': 'example-robot-data'}


def _imported_modules() -> dict[str, set[str]]:
    """Top-level module -> files importing it, over invdyn_ros/ and launch/ (absolute imports)."""
    found: dict[str, set[str]] = {}
    files = sorted((REPO / 'invdyn_ros').rglob('*.py')) + sorted((REPO / 'launch').glob('*.py'))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split('.')[0], set()).add(str(path.relative_to(REPO)))
    return found


def _package_xml_depends() -> dict[str, str | None]:
    """exec_depend key -> its condition (None: unconditional)."""
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / 'package.xml').getroot()
    return {e.text.strip(): e.get('condition') for e in root.iter('exec_depend')}


def test_every_third_party_import_is_declared_in_package_xml_or_optional():
    third_party = {m: files for m, files in _imported_modules().items()
                   if m not in sys.stdlib_module_names and m not in ('invdyn_ros', '__future__')}
    assert {'rclpy', 'numpy', 'torch', 'rosbags'} <= set(third_party)   # the walk finds imports
    unknown = {m: sorted(f) for m, f in third_party.items() if m not in ROSDEP_KEYS | OPTIONAL}
    assert not unknown, f'imports without a rosdep key in the table (add it and to package.xml): {unknown}'
    declared = _package_xml_depends()
    for module in third_party:
        if module in ROSDEP_KEYS:
            key = ROSDEP_KEYS[module]
            assert key in declared and declared[key] is None, \
                f'{module} ({sorted(third_party[module])}) needs <exec_depend>{key}</exec_depend>'
        elif OPTIONAL[module] is not None:          # optional with a key: only on request
            assert declared.get(OPTIONAL[module]), f'{OPTIONAL[module]}: conditional exec_depend'
    assert 'python3-numba' not in declared or declared['python3-numba'], 'numba is optional'


def test_package_xml_declares_no_key_outside_the_checked_table():
    checked = set(ROSDEP_KEYS.values()) | {k for k in OPTIONAL.values() if k}
    assert set(_package_xml_depends()) <= checked


def _setup_requirements() -> tuple[list[str], dict[str, list[str]]]:
    tree = ast.parse(SETUP)
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', '') == 'setup')
    kw = {k.arg: k.value for k in call.keywords}
    return ast.literal_eval(kw['install_requires']), ast.literal_eval(kw['extras_require'])


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split('#')[0].strip()
        if '==' in line:
            dist, version = line.split('==')
            pins[dist.strip().lower()] = version.strip()
    return pins


@pytest.mark.parametrize('pins', ['requirements.txt', 'requirements-min.txt'])
def test_setup_ranges_hold_the_pinned_and_the_oldest_supported_versions(pins):
    """install_requires are ranges: the pins of `make venv` and the oldest versions of
    `make test-min` (Ubuntu 24.04's) both satisfy them, so a ROS Jazzy install can use apt's."""
    from packaging.requirements import Requirement

    requires, extras = _setup_requirements()
    reqs = [Requirement(r) for r in requires + [r for rs in extras.values() for r in rs]]
    pinned = _pins(pins)
    for req in reqs:
        version = pinned.get(req.name.lower())
        assert version is not None, f'{req.name} has no pin in {pins}'
        assert req.specifier.contains(version, prereleases=True), (str(req), version, pins)
    for req in reqs:
        if req.name != 'torch':
            assert req.specifier and '==' not in str(req.specifier), f'{req}: a range, not a pin'
    assert 'torch==2.13.0' in requires
    setup_names = {r.name.lower() for r in reqs}
    for module, dist in PIP_NAMES.items():
        assert dist.lower() in setup_names, f'{module}: {dist} missing from setup.py'


def test_oldest_supported_versions_are_ubuntu_24_04s():
    pins = _pins('requirements-min.txt')
    assert pins['numpy'] == '1.26.4' and pins['scipy'] == '1.11.4'
    assert pins['torch'] == '2.13.0'


# ------------------------------------------------------------------ launch files
def _launch_tree(name: str) -> ast.Module:
    path = REPO / 'launch' / name
    tree = ast.parse(path.read_text(), str(path))
    compile(tree, str(path), 'exec')
    return tree


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and (getattr(n.func, 'id', None) or getattr(n.func, 'attr', None)) == name]


def _invdyn_launch_arguments() -> dict[str, tuple[str, str]]:
    """invdyn.launch.py: argument -> (default, description); the config default is computed."""
    out = {}
    for call in _calls(_launch_tree('invdyn.launch.py'), 'DeclareLaunchArgument'):
        kw = {k.arg: k.value for k in call.keywords}
        default = kw['default_value']
        default = ast.literal_eval(default) if isinstance(default, ast.Constant) else '<computed>'
        out[ast.literal_eval(call.args[0])] = (default, ast.literal_eval(kw['description']))
    return out


def _sim_demo_arguments() -> dict[str, tuple[str, str, str]]:
    tree = _launch_tree('sim_demo.launch.py')
    assign = next(n for n in tree.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], 'id', '') == 'ARGUMENTS')
    return ast.literal_eval(assign.value)


def _looks_described(name: str, description: str) -> bool:
    words = description.split()
    return len(words) >= 4 and not description.startswith('invdyn_demo --') and \
        description.strip().lower() != name.replace('_', ' ')


def test_every_launch_argument_has_a_real_description():
    for name, (_, description) in _invdyn_launch_arguments().items():
        assert _looks_described(name, description), (name, description)
    for name, (option, _, description) in _sim_demo_arguments().items():
        assert _looks_described(name, description), (name, description)
        assert description.lower() != option.lower()
    # sim_demo's DeclareLaunchArgument takes the description from ARGUMENTS
    call, = _calls(_launch_tree('sim_demo.launch.py'), 'DeclareLaunchArgument')
    assert 'description' in {k.arg for k in call.keywords}


def test_launch_remap_defaults_are_relative_so_a_pushed_namespace_applies():
    args = _invdyn_launch_arguments()
    assert set(args) == {'config', 'joint_states_topic', 'feedforward_topic', 'lifecycle'}
    js, ff = args['joint_states_topic'][0], args['feedforward_topic'][0]
    assert not js.startswith('/') and not ff.startswith('/'), (js, ff)
    # the remap rules launch_ros passes (-r joint_states:=<default> -r ~/feedforward:=<default>)
    # under a pushed namespace, resolved by real rcl
    rclpy = pytest.importorskip('rclpy')
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node(
            'invdyn_node', namespace='/lbr', context=ctx,
            cli_args=['--ros-args', '-r', f'joint_states:={js}', '-r', f'~/feedforward:={ff}'])
        assert node.resolve_topic_name('joint_states') == '/lbr/joint_states'
        assert node.resolve_topic_name('~/feedforward') == '/lbr/invdyn_node/feedforward'
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_sim_demo_launch_treats_ctrl_c_as_a_clean_stop():
    """launch logs 'process has died' for any exit code but 0; the demo's Ctrl-C exit is 130
    unless told otherwise, and the launch file tells it (--interrupt-exit-code 0)."""
    from invdyn_ros.cli.invdyn_demo import build_parser

    tree = _launch_tree('sim_demo.launch.py')
    assign = next(n for n in tree.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], 'id', '') == 'INTERRUPT_EXIT_CODE')
    assert ast.literal_eval(assign.value) == '0'
    assert '--interrupt-exit-code' in {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    args = build_parser().parse_args(['--interrupt-exit-code', '0'])
    assert args.interrupt_exit_code == 0
