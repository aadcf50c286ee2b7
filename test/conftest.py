"""Session-wide test setup: an isolated ROS 2 environment for tests that use real DDS.

Every test run gets its own ROS_DOMAIN_ID (derived from the process id) so parallel runs on one
machine do not see each other, discovery stays on localhost, and ROS logs go to a temp folder.
"""
import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_LOG_DIR', tempfile.mkdtemp(prefix='invdyn_roslog_'))
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')


class RecordingLog:
    """A logger that collects its lines by level, ``(level, text)`` (where the code under test
    takes the node's rclpy logger)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, text):
        self.lines.append(('info', text))

    def warning(self, text):
        self.lines.append(('warning', text))

    def error(self, text):
        self.lines.append(('error', text))


def datasets_dir() -> Path | None:
    """../shared/datasets beside the repository (or $INVDYN_DATASETS), if present."""
    env = os.environ.get('INVDYN_DATASETS')
    path = Path(env) if env else REPO.parent / 'shared' / 'datasets'
    return path if path.is_dir() else None


@pytest.fixture
def shared_datasets() -> Path:
    path = datasets_dir()
    if path is None:
        pytest.skip('../shared/datasets not present')
    return path
