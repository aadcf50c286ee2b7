"""invdyn_node under the faults of a hostile probe (issue #15): real node processes, real signals,
real files.

Covered: ``kill -9`` of the node leaves no child (trainer, resource tracker) alive after 2 s;
SIGINT / SIGTERM to the node or to its whole process group stop it within 2 s with the final
checkpoint written, also with two busy loops hogging both cores; ``kill -9`` in the middle of
checkpoint saves (10 times) always leaves a consistent, verified set that the next start resumes,
and no debris; a checkpoint with flipped bytes is refused with a one-line message and kept
byte-identical; a checkpoint of another robot is refused (exit 2) and kept byte-identical, and
``checkpoint_mismatch: fresh`` learns beside it without touching it; a full disk (a small tmpfs)
makes ``~/save_checkpoint`` answer ``success: false``, raises /diagnostics to WARN and keeps the
last good checkpoint.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from test_node import (START_TIMEOUT, Harness, call_service, log_of,  # noqa: E402
                       start_node, stop_node, write_params)

from invdyn_ros.learning import checkpoints  # noqa: E402

JOINTS = ['a', 'b', 'c']
BASE = {
    'joint_names': JOINTS, 'torque_limits': [50.0] * 3, 'model': 'lstm', 'second_model': 'gru',
    'hidden_size': 8, 'num_layers': 1, 'window': 4, 'batch_size': 16, 'min_samples': 32,
    'buffer_capacity': 500, 'recent_capacity': 100, 'checkpoint_period_s': 0.0,
    'diagnostics_period_s': 0.3, 'publish_period_s': 0.2,
}
UP = 'publishing zeros until ready'
STOP_LIMIT_S = 2.0


# ============================================================================ helpers
def _ppid_and_state(pid: int) -> tuple[int, str] | None:
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(')') + 2:].split()
    return int(fields[1]), fields[0]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (by scanning /proc for parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            info = _ppid_and_state(int(entry))
            if info is not None and info[1] != 'Z':
                children.setdefault(info[0], []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    info = _ppid_and_state(pid)
    return info is not None and info[1] != 'Z'


def cmdline(pid: int) -> str:
    try:
        return Path(f'/proc/{pid}/cmdline').read_bytes().replace(b'\0', b' ').decode()[:200]
    except OSError:
        return '?'


def wait_up(proc: subprocess.Popen, text: str = UP) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while text not in log_of(proc):
        assert proc.poll() is None, f'node exited ({proc.returncode}):\n{log_of(proc)[-3000:]}'
        assert time.monotonic() < deadline, f'node not up:\n{log_of(proc)[-3000:]}'
        time.sleep(0.05)


def launch(tmp: Path, name: str, **params) -> subprocess.Popen:
    pfile = write_params(tmp / f'{name}.yaml', dict(BASE, **params))
    return start_node(['--ros-args', '--params-file', str(pfile)], tmp / f'{name}.log',
                      start_new_session=True)         # its own process group, as under systemd


def cpu_hogs(n: int = 2) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(n)]


def end(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def assert_consistent(prefix: Path, names=('lstm', 'gru'), joints=JOINTS) -> dict:
    """The set at ``prefix`` verifies: manifest, joint names, every file's sha256."""
    files, manifest = checkpoints.read_set(prefix, names, joint_names=joints)
    assert manifest is not None, f'no manifest at {prefix}'
    for path in files.values():
        checkpoints.verified_file(path)          # raises CheckpointError on a mismatch
    return manifest


def debris(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()
                  if p.name.endswith('.tmp') or p.name.endswith('.next'))


def make_set(prefix: Path, joints: list[str], samples: int = 64) -> None:
    """A real checkpoint set, written in-process as the node writes it."""
    from invdyn_ros.pipeline.pipeline import PipelineConfig, make_trainer
    cfg = PipelineConfig.from_params(dict(BASE, joint_names=joints,
                                          torque_limits=[50.0] * len(joints)))
    tr = make_trainer(cfg, 'inline')
    rng = np.random.default_rng(1)
    for _ in range(samples):
        tr.submit(rng.normal(size=(4, 3 * len(joints))), rng.normal(size=len(joints)))
    tr.save(prefix, joint_names=cfg.joint_names)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def run_to_exit(tmp: Path, name: str, **params) -> tuple[int, str]:
    proc = launch(tmp, name, **params)
    try:
        proc.wait(START_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.log_file.close()  # type: ignore[attr-defined]
    return proc.returncode, Path(proc.log_path).read_text()  # type: ignore[attr-defined]


# ============================================================================ process lifetime
def test_kill_9_of_the_node_leaves_no_child_after_2_s(tmp_path):
    proc = launch(tmp_path, 'node', checkpoint_path=str(tmp_path / 'ck' / 'arm'))
    try:
        wait_up(proc)
        children = descendants(proc.pid)
        assert children, 'the node has no training worker process'
        print('children:', {c: cmdline(c) for c in children})
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 2.0
        while any(alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = {c: cmdline(c) for c in children if alive(c)}
        assert not left, f'alive 2 s after kill -9 of the node: {left}'
    finally:
        for c in descendants(proc.pid) if proc.poll() is None else ():
            os.kill(c, signal.SIGKILL)
        stop_node(proc)


@pytest.mark.parametrize('sig, target, hog', [
    ('SIGINT', 'node', False), ('SIGTERM', 'node', False), ('SIGTERM', 'group', False),
    ('SIGTERM', 'group', True), ('SIGINT', 'group', True)])
def test_a_stop_signal_ends_the_node_within_2_s_with_the_final_checkpoint(tmp_path, sig, target,
                                                                          hog):
    """A stop signal to the node, or to its whole process group (systemd, ``kill -TERM -PGID``,
    a terminal's Ctrl-C): the training worker must not die before the node has saved from it."""
    prefix = tmp_path / 'ck' / 'arm'
    proc = launch(tmp_path, 'node', checkpoint_path=str(prefix))
    hogs: list[subprocess.Popen] = []
    try:
        wait_up(proc)
        assert descendants(proc.pid), 'no training worker'
        assert not Path(checkpoints.manifest_path(prefix)).exists()
        if hog:
            hogs = cpu_hogs(2)
            time.sleep(0.5)
        signum = getattr(signal, sig)
        t0 = time.monotonic()
        if target == 'group':
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        proc.wait(60)
        took = time.monotonic() - t0
        print(f'{sig} to the {target}{" under a CPU hog" if hog else ""}: exit after {took:.2f} s')
        log = log_of(proc)
        assert proc.returncode == 0, log[-3000:]
        assert 'final checkpoint written' in log, log[-3000:]
        assert_consistent(prefix)
        assert took <= STOP_LIMIT_S, f'stop took {took:.2f} s'
    finally:
        end(hogs)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stop_node(proc)


# ============================================================================ checkpoints
def test_kill_9_during_saves_always_leaves_a_consistent_set_that_resumes(tmp_path):
    """Saves every 50 ms; the node is killed while a temp file or a staged file exists (the
    middle of a save), ten times; each time the set on disk verifies and the next start resumes
    from it; after a clean stop no debris is left."""
    prefix = tmp_path / 'ck' / 'arm'
    directory = prefix.parent
    params = dict(checkpoint_path=str(prefix), checkpoint_period_s=0.05, trainer='inline')
    mid_save = 0
    for i in range(11):
        proc = launch(tmp_path, f'node{i}', **params)
        try:
            wait_up(proc)
            if i > 0:
                assert 'resumed from checkpoint' in log_of(proc) and \
                    'sha256 verified' in log_of(proc), log_of(proc)[-3000:]
            if i == 10:
                break
            # wait for a first set, then for the middle of a save
            deadline = time.monotonic() + 30
            while not Path(checkpoints.manifest_path(prefix)).exists():
                assert time.monotonic() < deadline and proc.poll() is None, log_of(proc)[-3000:]
                time.sleep(0.01)
            want = '.tmp' if i % 2 == 0 else '.next'
            deadline = time.monotonic() + 5
            hit = False
            while time.monotonic() < deadline:
                if any(name.endswith(want) for name in os.listdir(directory)):
                    hit = True
                    break
                time.sleep(0.0005)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            mid_save += hit
        finally:
            if i == 10 or proc.poll() is None:
                assert stop_node(proc) == 0
            else:
                proc.log_file.close()  # type: ignore[attr-defined]
        assert_consistent(prefix)
    print(f'{mid_save} of 10 kills hit a save in progress')
    assert mid_save >= 1
    assert_consistent(prefix)
    assert debris(directory) == []


def test_corrupted_bytes_are_refused_with_a_clear_message_and_the_file_kept(tmp_path):
    prefix = tmp_path / 'ck' / 'arm'
    make_set(prefix, JOINTS)
    victim = Path(checkpoints.checkpoint_path(prefix, 'gru'))
    data = bytearray(victim.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 32] = bytes(b ^ 0x5A for b in data[mid:mid + 32])
    victim.write_bytes(bytes(data))
    before = snapshot(prefix.parent)
    code, log = run_to_exit(tmp_path, 'node', checkpoint_path=str(prefix))
    refused = [line for line in log.splitlines() if 'checkpoint refused' in line]
    assert code == 2, log[-3000:]
    assert len(refused) == 1 and str(victim) in refused[0] and 'manifest' in refused[0], log[-3000:]
    assert 'Traceback' not in log
    assert snapshot(prefix.parent) == before             # kept as it was, nothing renamed


def test_a_checkpoint_of_another_robot_is_refused_and_fresh_learns_beside_it(tmp_path):
    prefix = tmp_path / 'ck' / 'arm'
    kuka = [f'lbr_A{i}' for i in range(1, 8)]
    make_set(prefix, kuka)
    before = snapshot(prefix.parent)
    code, log = run_to_exit(tmp_path, 'refuse', checkpoint_path=str(prefix), trainer='inline')
    refused = [line for line in log.splitlines() if 'checkpoint refused' in line]
    assert code == 2, log[-3000:]
    assert len(refused) == 1 and checkpoints.manifest_path(prefix) in refused[0] \
        and 'lbr_A1' in refused[0] and "'a'" in refused[0], log[-3000:]
    assert snapshot(prefix.parent) == before

    # checkpoint_mismatch: fresh -> learns anew under <prefix>-<robot id>, never over the old set
    proc = launch(tmp_path, 'fresh', checkpoint_path=str(prefix), trainer='inline',
                  checkpoint_mismatch='fresh')
    try:
        wait_up(proc)
        assert 'left untouched' in log_of(proc)
    finally:
        assert stop_node(proc) == 0
    after = snapshot(prefix.parent)
    assert {k: v for k, v in after.items() if k in before} == before
    fresh = [k for k in after if k not in before and k.endswith('.manifest.json')]
    assert len(fresh) == 1 and fresh[0].startswith('arm-'), sorted(after)
    assert_consistent(prefix.parent / fresh[0][:-len('.manifest.json')])


class _DiagHarness(Harness):
    """Harness that also keeps each status message (the level's reason)."""

    def _on_diag(self, msg) -> None:
        for st in msg.status:
            if 'inverse dynamics' in st.name:
                d = {kv.key: kv.value for kv in st.values}
                d['_level'] = st.level
                d['_message'] = st.message
                self.diags.append(d)


def _call(h: Harness, proc):
    """~/save_checkpoint: sent again only after 30 s without an answer (a lost response), long
    after a save here ends, so the repeat never meets the first save still running."""
    return call_service(h.save_client, Trigger.Request(), proc, resend_after=30.0)


def test_a_full_disk_answers_success_false_warns_and_keeps_the_last_checkpoint(tmp_path):
    """The checkpoints live on a 4 MB tmpfs; after a good save the disk is filled up."""
    mnt = tmp_path / 'small'
    mnt.mkdir()
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4M', 'tmpfs', str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f'cannot mount a small tmpfs here: {mounted.stderr.strip()}')
    proc = None
    h = None
    try:
        prefix = mnt / 'arm'
        proc = launch(tmp_path, 'node', checkpoint_path=str(prefix))
        h = _DiagHarness()
        h.wait_for_node(proc)
        good = _call(h, proc)
        assert good.success, good.message
        assert_consistent(prefix)
        before = snapshot(mnt)
        with open(mnt / 'filler', 'wb') as f:          # fill the disk
            try:
                while True:
                    f.write(b'\0' * 65536)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        bad = _call(h, proc)
        print('full disk:', bad.message)
        assert not bad.success
        assert 'checkpoint failed' in bad.message and ('No space' in bad.message
                                                       or 'unexpected pos' in bad.message)
        h.wait_diag(lambda d: d['_level'] == DiagnosticStatus.WARN
                    and 'checkpoint failed' in d['_message']
                    and d['checkpoint'].startswith('failed'))
        after = snapshot(mnt)
        after.pop('filler')
        assert after == before                          # the last good set, untouched
        assert_consistent(prefix)
        (mnt / 'filler').unlink()
        assert _call(h, proc).success                  # room again: saves again
        h.wait_diag(lambda d: 'checkpoint failed' not in d['_message'])
    finally:
        if h is not None:
            h.close()
        if proc is not None:
            stop_node(proc)
        subprocess.run(['umount', '-l', str(mnt)], capture_output=True)
