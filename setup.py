"""invdyn_ros: an ament_python ROS 2 package that also installs with pip.

For `ros2 run invdyn_ros <exe>` and launch_ros `Node(package='invdyn_ros', executable=...)` to work
after a plain `pip install .`, the data_files below install the ament index marker, package.xml,
launch/ and config/, and for every console script a shim `lib/invdyn_ros/<exe>` that execs
`<prefix>/bin/<exe>`. (`pip install -e` installs no data_files; use a normal install.)
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'invdyn_ros'
EXECUTABLES = {
    'invdyn_node': 'invdyn_ros.ros.node:main',
    'invdyn_eval': 'invdyn_ros.cli.invdyn_eval:main',
    'invdyn_bag': 'invdyn_ros.cli.invdyn_bag:main',
    'invdyn_replay': 'invdyn_ros.cli.invdyn_replay:main',
    'invdyn_traj': 'invdyn_ros.cli.invdyn_traj:main',
    'invdyn_demo': 'invdyn_ros.cli.invdyn_demo:main',
    'sim_arm': 'invdyn_ros.sim.sim_arm_node:main',
    'torque_controller': 'invdyn_ros.sim.controller_node:main',
}
SHIM_DIR = os.path.join('build', 'lib_shims')


def _write_shims():
    os.makedirs(SHIM_DIR, exist_ok=True)
    paths = []
    for exe in EXECUTABLES:
        path = os.path.join(SHIM_DIR, exe)
        with open(path, 'w') as f:
            f.write('#!/bin/sh\nexec "$(dirname "$0")/../../bin/%s" "$@"\n' % exe)
        os.chmod(path, 0o755)
        paths.append(path)
    return paths


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench']),
    python_requires='>=3.10',
    # rclpy and the message packages come from a ROS 2 install (or requirements-ros.txt). Ranges,
    # not pins: their lower ends are Ubuntu 24.04's apt versions (what ROS 2 Jazzy's own Python
    # extensions are built against; `make test-min` runs the suite with exactly those, see
    # requirements-min.txt); the exact pins of `make venv` are in requirements.txt/constraints.txt.
    install_requires=[
        'numpy>=1.26.4,<3',
        'scipy>=1.11.4,<2',
        'torch==2.13.0',  # the CPU build; any other version pulls GBs of CUDA packages
        'scikit-learn>=1.4.1.post1,<2',
        'rosbags>=0.11.0,<0.12',
        'PyYAML>=6.0.1,<7',
        'matplotlib>=3.6.3,<4',
        'tqdm>=4.66.2,<5',
    ],
    extras_require={'sim': ['pin>=2.7', 'example-robot-data>=4.1'],
                    'fast': ['numba>=0.59.1']},  # compiled read-out (kernels.py); numpy without it
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml')),
        ('lib/' + PACKAGE, _write_shims()),
    ],
    zip_safe=False,
    maintainer='invdyn_ros maintainers',
    description='Online learning of robot inverse dynamics (LSTM, dual-network identifier) for ROS 2',
    license='Apache-2.0',
    entry_points={'console_scripts': ['%s = %s' % kv for kv in EXECUTABLES.items()]},
)
