"""Checkpoint sets: the files of all networks as one atomic, verified unit.

A checkpoint at prefix ``P`` is one file per network, ``P.<name>.pt`` (:func:`checkpoint_path`),
plus the manifest ``P.manifest.json``, written LAST, that lists each file's sha256, size, model
kind and joint count, and the robot's joint names. A save (:func:`write_set`):

1. writes every network's new file beside the old one as ``P.<name>.pt.next`` (atomic, fsynced);
2. replaces the manifest (atomic, fsynced): this is the commit -- before it the old set is the
   checkpoint, after it the new one;
3. renames each ``.next`` file over its ``.pt``.

A crash (kill -9, power loss) before step 2 leaves the old manifest and old files (plus ``.next``
and temp debris that :func:`clean_stale` removes at start-up); after step 2 the manifest names the
new content, and where a rename of step 3 did not happen yet the ``.next`` file holds it
(:func:`verified_file` reads it, :func:`clean_stale` finishes the rename). Loading verifies every
checksum (:func:`read_set`, :func:`verified_file`): a mismatch raises :class:`CheckpointError`
naming the path and the problem. Old checkpoints without a manifest still load, unverified.
Nothing here renames or deletes a checkpoint file that a manifest lists.

The physics stage (prior + identification, :class:`invdyn_ros.stages.residual.PhysicsStage`) is one
more member of the set, ``P.physics-<parameter count>.pt`` (:func:`physics_path`), listed under the
manifest's ``physics`` key (by parameter count) and written, verified and tidied exactly like a
network's file. A save carries the other parameter counts' members of the previous manifest
forward, and a save without a physics stage all of them (a URDF that changed its model size
never overwrites the file of the old one).
:func:`read_physics` loads them; a set without them (older ones) has none.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from typing import Any, Iterable, Mapping

import torch

from invdyn_ros import __version__
from invdyn_ros.atomic import atomic_write, atomic_write_text
from invdyn_ros.errors import CheckpointError

__all__ = ['checkpoint_path', 'manifest_path', 'staged_path', 'write_set', 'read_set',
           'read_manifest', 'verified_file', 'clean_stale', 'robot_id', 'MANIFEST_FORMAT',
           'checkpoint_prefix', 'checkpoint_files', 'checkpoint_to_resume',
           'fresh_checkpoint_path', 'physics_path', 'read_physics']

MANIFEST_FORMAT = 'invdyn_ros checkpoint set 1'
_STAGED = '.next'


def checkpoint_path(path_prefix: str | os.PathLike, name: str) -> str:
    """The checkpoint file of network ``name`` for a ``save(path_prefix)`` call."""
    return f'{os.fspath(path_prefix)}.{name}.pt'


def manifest_path(path_prefix: str | os.PathLike) -> str:
    return f'{os.fspath(path_prefix)}.manifest.json'


def physics_path(path_prefix: str | os.PathLike, n_params: int) -> str:
    """The checkpoint file of the physics stage with ``n_params`` parameters."""
    return f'{os.fspath(path_prefix)}.physics-{int(n_params)}.pt'


def staged_path(path: str | os.PathLike) -> str:
    """Where a save stages a network's new file until the manifest has committed it."""
    return f'{os.fspath(path)}{_STAGED}'


def _sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, 'rb') as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _fsync_dir(directory: str | os.PathLike) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


# ============================================================================ write
def _to_tensors(obj: Any) -> Any:
    """numpy arrays -> torch tensors (same dtype, same values), recursively: what
    ``torch.load(weights_only=True)`` reads back."""
    if isinstance(obj, dict):
        return {str(k): _to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_tensors(v) for v in obj]
    if hasattr(obj, '__array__') and not isinstance(obj, torch.Tensor):
        import numpy as np  # noqa: PLC0415
        return torch.from_numpy(np.array(obj))
    return obj


def _to_numpy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_numpy(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.numpy().copy()
    return obj


def _physics_entries(manifest: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{parameter count (str): entry}`` of the set's physics members (valid entries only)."""
    phys = None if manifest is None else manifest.get('physics')
    if not isinstance(phys, dict):
        return {}
    return {k: e for k, e in phys.items()
            if isinstance(e, dict) and isinstance(e.get('file'), str) and '/' not in e['file']
            and isinstance(e.get('sha256'), str) and isinstance(e.get('size'), int)}


def _listed(manifest: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every file entry of a manifest: the networks' and the physics members'."""
    if manifest is None:
        return []
    return list(manifest['networks'].values()) + list(_physics_entries(manifest).values())


def write_set(path_prefix: str | os.PathLike, states: Mapping[str, Mapping[str, Any]],
              joint_names: Iterable[str] | None = None,
              physics: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Write ``{network name: learner state_dict}`` as one checkpoint set (module docstring);
    returns ``{name: file}``. On an error (disk full...) the previous set stays the checkpoint.

    ``physics``: the physics stage's ``state_dict()`` (its ``theta`` gives the parameter count),
    one more member (``{'physics': file}`` in the result)."""
    prefix = os.fspath(path_prefix)
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    entries: dict[str, dict[str, Any]] = {}
    phys_entries: dict[str, dict[str, Any]] = {}
    n_joints = None
    try:
        try:
            old = read_manifest(prefix)
        except CheckpointError:
            old = None
        n_params = None if physics is None else int(len(physics['theta']))
        for key, e in _physics_entries(old).items():   # other model sizes: carried forward
            f = _entry_file(prefix, e)
            if key != str(n_params) and (os.path.isfile(f) or os.path.isfile(staged_path(f))):
                phys_entries[key] = e
        if physics is not None:
            buf = io.BytesIO()
            torch.save({'format': 'invdyn_ros physics 1', 'n_params': n_params,
                        'joint_names': None if joint_names is None else
                        [str(j) for j in joint_names], 'state': _to_tensors(dict(physics))}, buf)
            data = buf.getbuffer()
            final = physics_path(prefix, n_params)
            atomic_write(staged_path(final), lambda f, d=data: f.write(d), durable=True)
            phys_entries[str(n_params)] = entries['physics'] = {
                'file': os.path.basename(final), 'sha256': hashlib.sha256(data).hexdigest(),
                'size': len(data), 'n_params': n_params}
        for name, state in states.items():
            buf = io.BytesIO()
            torch.save(state, buf)
            data = buf.getbuffer()
            final = checkpoint_path(prefix, name)
            atomic_write(staged_path(final), lambda f, d=data: f.write(d), durable=True)
            n_joints = int(state['n_joints'])
            entries[name] = {'file': os.path.basename(final),
                             'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data),
                             'kind': state.get('kind'), 'n_joints': n_joints}
        manifest = {'format': MANIFEST_FORMAT, 'invdyn_version': __version__,
                    'written': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                    'n_joints': n_joints,
                    'joint_names': None if joint_names is None else [str(j) for j in joint_names],
                    'networks': {k: e for k, e in entries.items() if k != 'physics'}}
        if phys_entries:
            manifest['physics'] = phys_entries
        atomic_write_text(manifest_path(prefix), json.dumps(manifest, indent=1) + '\n',
                          durable=True)                                # the commit
    except BaseException:
        for entry in entries.values():     # not committed: the staged files are debris
            try:
                os.unlink(staged_path(os.path.join(directory, entry['file'])))
            except OSError:
                pass
        raise
    for entry in entries.values():
        final = os.path.join(directory, entry['file'])
        os.replace(staged_path(final), final)
    _fsync_dir(directory)
    return {name: os.path.join(os.path.dirname(prefix), entries[name]['file'])
            for name in entries}


# ============================================================================ read
def read_manifest(path_prefix: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed manifest of the set at ``path_prefix``, None if there is none (an old,
    unverified checkpoint or none at all); :class:`CheckpointError` if it is unreadable."""
    path = manifest_path(path_prefix)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f'checkpoint manifest {path} is unreadable: '
                              f'{type(exc).__name__}: {exc}') from exc
    if not isinstance(manifest, dict) or manifest.get('format') != MANIFEST_FORMAT:
        raise CheckpointError(f'checkpoint manifest {path} is not a {MANIFEST_FORMAT!r} manifest')
    nets = manifest.get('networks')
    if not isinstance(nets, dict) or not nets or not all(
            isinstance(e, dict) and isinstance(e.get('file'), str) and '/' not in e['file']
            and isinstance(e.get('sha256'), str) and isinstance(e.get('size'), int)
            for e in nets.values()):
        raise CheckpointError(f'checkpoint manifest {path} has no valid network list')
    return manifest


def _entry_file(path_prefix: str | os.PathLike, entry: Mapping[str, Any]) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(os.fspath(path_prefix))), entry['file'])


def _matching_file(final: str, entry: Mapping[str, Any]) -> str | None:
    """``final`` or its staged copy, whichever holds exactly the listed content; None if neither."""
    for candidate in (final, staged_path(final)):
        if os.path.isfile(candidate) and os.path.getsize(candidate) == entry['size'] \
                and _sha256_file(candidate)[0] == entry['sha256']:
            return candidate
    return None


def read_set(path_prefix: str | os.PathLike, names: Iterable[str] | None = None,
             joint_names: Iterable[str] | None = None,
             kinds: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict | None]:
    """``({name: file to load}, manifest)`` of the set at ``path_prefix``, checked against what the
    caller expects: the network ``names`` (the same set), ``joint_names`` (same names, same
    order), ``kinds`` (``{name: model kind}``). Files are not hashed here (see
    :func:`verified_file`, which every load runs), only their presence and size.

    Without a manifest: ``({name: file} of the files that exist, None)`` (old checkpoints, unverified).
    Raises :class:`CheckpointError` naming the path and the mismatch."""
    prefix = os.fspath(path_prefix)
    manifest = read_manifest(prefix)
    if manifest is None:
        if names is None:
            return {}, None
        return {n: checkpoint_path(prefix, n) for n in names
                if os.path.isfile(checkpoint_path(prefix, n))}, None
    mpath = manifest_path(prefix)
    nets = manifest['networks']
    if joint_names is not None:
        want = [str(j) for j in joint_names]
        have = manifest.get('joint_names')
        if have is not None and list(have) != want:
            raise CheckpointError(f'{mpath}: checkpoint is for joints {list(have)}, this robot '
                                  f'has {want}')
        counts = {e.get('n_joints') for e in nets.values()} | {manifest.get('n_joints')}
        counts.discard(None)
        if counts and counts != {len(want)}:
            raise CheckpointError(f'{mpath}: checkpoint is for {sorted(counts)} joints, this '
                                  f'robot has {len(want)}')
    if names is not None and set(names) != set(nets):
        raise CheckpointError(f'{mpath}: checkpoint holds networks {sorted(nets)}, configured '
                              f'{sorted(names)}')
    for name, kind in (kinds or {}).items():
        if name in nets and nets[name].get('kind') not in (None, kind):
            raise CheckpointError(f'{mpath}: network {name!r} is a {nets[name]["kind"]!r} '
                                  f'model, configured {kind!r}')
    files = {}
    for name, entry in nets.items():
        final = _entry_file(prefix, entry)
        ok = [c for c in (final, staged_path(final))
              if os.path.isfile(c) and os.path.getsize(c) == entry['size']]
        if not ok:
            raise CheckpointError(f'{final}: missing or not the size the manifest {mpath} lists '
                                  f'({entry["size"]} bytes)')
        files[name] = final
    return files, manifest


def _manifest_for_file(path: str) -> tuple[str, dict, dict] | None:
    """(prefix, manifest, entry) of the set that lists the checkpoint file ``path``, if any."""
    m = re.fullmatch(r'(.+)\.([^./]+)\.pt', path)
    if m is None:
        return None
    prefix = m.group(1)
    manifest = read_manifest(prefix)
    if manifest is None:
        return None
    for entry in _listed(manifest):
        if entry['file'] == os.path.basename(path):
            return prefix, manifest, entry
    return None


def verified_file(path: str | os.PathLike) -> tuple[str, bool]:
    """``(file to read, verified)`` for the checkpoint file ``path``: when a manifest lists it,
    the file (or its committed staged copy, see the module docstring) whose sha256 matches the
    manifest, else :class:`CheckpointError` naming both; without a manifest ``(path, False)``."""
    path = os.path.abspath(os.fspath(path))
    found = _manifest_for_file(path)
    if found is None:
        return path, False
    prefix, _, entry = found
    match = _matching_file(path, entry)
    if match is None:
        actual = ('missing' if not os.path.isfile(path) else
                  'sha256 %s, %d bytes' % _sha256_file(path))
        raise CheckpointError(f'checkpoint {path} does not match its manifest '
                              f'{manifest_path(prefix)} (corrupt or from an unfinished save): '
                              f'expected sha256 {entry["sha256"]}, {entry["size"]} bytes; found '
                              f'{actual}')
    return match, True


def read_physics(path_prefix: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """``{parameter count: physics state_dict}`` of the set at ``path_prefix``: every physics
    member its manifest lists, sha256-verified ({} for a set without them, an old set without a
    manifest, or no checkpoint). A member that does not match its manifest or does not load
    raises :class:`CheckpointError` naming it, as a network file does."""
    import pickle  # noqa: PLC0415
    import zipfile  # noqa: PLC0415
    prefix = os.fspath(path_prefix)
    out: dict[int, dict[str, Any]] = {}
    for key, entry in _physics_entries(read_manifest(prefix)).items():
        final = _entry_file(prefix, entry)
        source, _ = verified_file(final)
        try:
            d = torch.load(source, map_location='cpu', weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
                zipfile.BadZipFile, KeyError, AttributeError, TypeError, IndexError) as exc:
            raise CheckpointError(f'checkpoint {final} is truncated, corrupt or not a torch '
                                  f'checkpoint: {type(exc).__name__}: {exc}') from exc
        if not isinstance(d, dict) or d.get('format') != 'invdyn_ros physics 1' \
                or not isinstance(d.get('state'), dict) or str(d.get('n_params')) != key:
            raise CheckpointError(f'checkpoint {final} is not the physics stage its manifest '
                                  f'{manifest_path(prefix)} lists')
        out[int(key)] = _to_numpy(d['state'])
    return out


# ============================================================================ start-up
def _temp_pattern(base: str) -> re.Pattern:
    # atomic_write's temp files: '.<target name>.<mkstemp's 8 characters>.tmp'
    return re.compile(r'\.' + re.escape(base) + r'\.(?:[^./]+\.pt(?:' + re.escape(_STAGED)
                      + r')?|manifest\.json)\.[A-Za-z0-9_]+\.tmp')


def clean_stale(path_prefix: str | os.PathLike) -> list[str]:
    """Tidy the set at ``path_prefix`` after an interrupted save; returns what it did.

    Removes atomic_write temp files of the set's files, finishes the renames of a committed save
    (a ``.next`` file whose content the manifest lists) and removes uncommitted ``.next`` files.
    Files that the manifest lists are never removed. Call it only for a set this process will
    use (after :func:`read_set` accepted it): a refused checkpoint is left untouched."""
    prefix = os.path.abspath(os.fspath(path_prefix))
    directory, base = os.path.split(prefix)
    if not os.path.isdir(directory):
        return []
    done: list[str] = []
    temp = _temp_pattern(base)
    staged = re.compile(re.escape(base) + r'\.[^./]+\.pt' + re.escape(_STAGED))
    try:
        manifest = read_manifest(prefix)
    except CheckpointError:
        manifest = None
    listed = {e['file']: e for e in _listed(manifest)}
    for entry in sorted(os.listdir(directory)):
        full = os.path.join(directory, entry)
        try:
            if temp.fullmatch(entry):
                os.unlink(full)
                done.append(f'removed temp file {full}')
            elif staged.fullmatch(entry):
                final_name = entry[:-len(_STAGED)]
                final = os.path.join(directory, final_name)
                e = listed.get(final_name)
                if e is not None and _matching_file(final, e) == full:
                    os.replace(full, final)
                    done.append(f'completed the committed save of {final}')
                else:
                    os.unlink(full)
                    done.append(f'removed uncommitted {full}')
        except OSError as exc:
            done.append(f'could not tidy {full}: {exc}')
    if done:
        _fsync_dir(directory)
    return done


def robot_id(joint_names: Iterable[str], networks: Iterable[tuple[str, Any]]) -> str:
    """8 hex digits that identify a robot and its networks (joint names, network names, model
    kinds, options and window), for ``checkpoint_mismatch: fresh``'s own prefix."""
    desc = {'joints': [str(j) for j in joint_names],
            'networks': [[name, cfg.model, dict(cfg.model_options), cfg.window]
                         for name, cfg in networks]}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:8]


# ============================================================================ a config's set
# ``config``: a PipelineConfig (its ``joint_names``, ``network_names`` and ``networks()``)
def checkpoint_prefix(path: str | os.PathLike) -> str:
    """The trainers' path prefix for a user's ``checkpoint_path`` (a trailing ``.pt`` is dropped,
    so ``/x/kuka.pt`` gives ``/x/kuka.lstm.pt`` rather than ``/x/kuka.pt.lstm.pt``)."""
    p = os.path.expanduser(os.fspath(path))
    return p[:-3] if p.endswith('.pt') else p


def checkpoint_files(config: Any, path: str | os.PathLike) -> dict[str, str]:
    """``{network name: file}`` that a checkpoint at ``path`` consists of for this config (plus
    the set's manifest, ``<prefix>.manifest.json``)."""
    prefix = checkpoint_prefix(path)
    return {name: checkpoint_path(prefix, name) for name in config.network_names}


def checkpoint_to_resume(config: Any, path: str | os.PathLike) -> tuple[dict[str, str], bool]:
    """``({network name: file}, verified)`` to resume ``config`` from the checkpoint at ``path``.

    A set with a manifest must fit the robot: the same joint names (and count), the same
    networks and model kinds, else :class:`CheckpointError` naming the manifest and the mismatch
    (the checksums are verified when the files are loaded). Without a manifest (an old
    checkpoint): the network files that exist, unverified ({} when there is none)."""
    files, manifest = read_set(checkpoint_prefix(path), config.network_names,
                               joint_names=config.joint_names,
                               kinds={name: cfg.model for name, cfg in config.networks()})
    return files, manifest is not None


def fresh_checkpoint_path(config: Any, path: str | os.PathLike) -> str:
    """Where ``checkpoint_mismatch: fresh`` writes when the checkpoint at ``path`` does not fit:
    ``<prefix>-<robot id>`` beside it (8 hex digits of a hash of the joint names and the
    networks, :func:`robot_id`): the same robot finds its own set there on the next start, and
    the one at ``path`` is never written to."""
    return f'{checkpoint_prefix(path)}-{robot_id(config.joint_names, config.networks())}'
