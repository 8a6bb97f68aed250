"""Model artefacts on disk that replicas can share (one folder, many processes, many hosts).

Every artefact the sidecar writes (the exported OpenVINO IR, the calibrated int8 model) goes
through `obtain`:

- its folder's name never changes once written: `<variant>-<fingerprint>`, the fingerprint
  hashing the inputs (model files) and every option the artefact depends on, so a changed
  checkpoint or option is a new name and nothing published is ever replaced;
- one builder at a time per artefact, across processes and hosts: a file lock beside it
  (`.<name>.lock`, an flock; the kernel drops it when its holder dies, so a killed builder never
  blocks the next start); the others log "waiting for another replica to build ..." and then use
  what it published;
- built in a staging folder and published with one rename, `meta.json` (with each file's size
  and sha256) written last: a reader sees a whole artefact or none;
- verified on every read (meta, fingerprint, each file's size and sha256); only a corrupt one is
  moved aside and rebuilt, with a warning.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil
import socket
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

META = "meta.json"
LOCK_TIMEOUT_S = 3600.0  # an int8 calibration of a large model on a busy CPU takes minutes, not hours
_STAGING, _CORRUPT = ".staging-", ".corrupt-"


class ArtefactError(RuntimeError):
    """An artefact could not be built or waited for (the message says which and why)."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What one artefact is made from. `inputs` fingerprints the source files (or a hub id and
    revision); `options` is everything else it depends on (precision, calibration text, the
    runtime's version); `files` are the files the builder must write."""

    variant: str  # a readable prefix: cross-encoder-int8-default
    inputs: str
    options: Mapping[str, Any]
    files: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        body = json.dumps({"variant": self.variant, "inputs": self.inputs, "options": dict(self.options)},
                          sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()

    @property
    def name(self) -> str:
        return f"{self.variant}-{self.fingerprint[:16]}"


def files_fingerprint(source: str, revision: str | None,
                      suffixes: Sequence[str] = (".json", ".safetensors", ".bin", ".txt", ".model")) -> str:
    """A local checkpoint: its files' names, sizes and mtimes (cheap; a rewritten file changes it).
    Anything else (a hub id): the id and the revision."""
    path = pathlib.Path(source)
    parts = [revision or ""]
    if path.is_dir():
        for file in sorted(path.iterdir()):
            if file.is_file() and file.suffix in suffixes:
                stat = file.stat()
                parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    else:
        parts.append(source)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check(folder: pathlib.Path, recipe: Recipe) -> str:
    """'' when `folder` holds the whole artefact of `recipe`, 'absent' when there is no folder,
    else what is wrong with it."""
    if not folder.is_dir():
        return "absent"
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable {META}: {exc}"
    if not isinstance(meta, dict) or meta.get("fingerprint") != recipe.fingerprint:
        return f"{META} is of another build"
    files = meta.get("files")
    if not isinstance(files, dict) or not set(recipe.files) <= set(files):
        return f"{META} does not list {', '.join(recipe.files)}"
    for name, expected in files.items():
        file = folder / name
        try:
            size = file.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != expected.get("size"):
            return f"{name} has {size} bytes, {expected.get('size')} were written"
        if _sha256(file) != expected.get("sha256"):
            return f"{name} does not match its sha256"
    return ""


def find(recipe: Recipe, folders: Sequence[pathlib.Path]) -> pathlib.Path | None:
    """The first of `folders` that holds a valid artefact of `recipe`; warns about corrupt ones."""
    for folder in folders:
        problem = check(folder, recipe)
        if not problem:
            return folder
        if problem != "absent":
            log.warning("the artefact in %s is corrupt (%s); not using it", folder, problem)
    return None


def _write_meta(staging: pathlib.Path, recipe: Recipe, info: Mapping[str, Any]) -> None:
    files = {str(p.relative_to(staging)): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(staging.rglob("*")) if p.is_file()}
    missing = [name for name in recipe.files if name not in files]
    if missing:
        raise ArtefactError(f"building {recipe.name} wrote no {', '.join(missing)}")
    meta = {"fingerprint": recipe.fingerprint, "variant": recipe.variant, "inputs": recipe.inputs,
            "options": dict(recipe.options), "files": files, **info,
            "built_by": f"{socket.gethostname()}:{os.getpid()}", "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                             time.gmtime())}
    partial = staging / f".{META}.partial"  # meta.json appears whole or not at all
    partial.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(partial, staging / META)


def _clear_leftovers(parent: pathlib.Path, name: str) -> None:
    """Staging folders of builders that died, corrupt artefacts moved aside: only the lock holder
    stages `name`, so under the lock anything left over is nobody's."""
    for leftover in parent.glob(f".*-{name}-*"):
        if leftover.name.startswith((_STAGING, _CORRUPT)):
            shutil.rmtree(leftover, ignore_errors=True)


def obtain(recipe: Recipe, target: pathlib.Path, build: Callable[[pathlib.Path], None], *,
           elsewhere: Sequence[pathlib.Path] = (), info: Mapping[str, Any] | None = None,
           timeout: float = LOCK_TIMEOUT_S) -> pathlib.Path:
    """The folder of a valid artefact of `recipe`: found in `elsewhere` (e.g. beside a read-only
    model) or at `target`, else built there by `build(staging_folder)` by exactly one process."""
    if target.name != recipe.name:
        raise ValueError(f"an artefact of {recipe.name} must be published under that name, not {target.name}")
    found = find(recipe, list(dict.fromkeys([*elsewhere, target])))
    if found:
        return found
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(parent / f".{recipe.name}.lock", mode=0o666)  # any replica's user may take it
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another replica to build %s (lock %s, at most %.0fs)", target, lock.lock_file, timeout)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise ArtefactError(f"waited {timeout:.0f}s for another replica to build {target}; it holds "
                                f"{lock.lock_file} still (a dead holder releases it)") from None
    try:
        problem = check(target, recipe)  # another replica may have published it while this one waited
        if not problem:
            return target
        if problem != "absent":
            log.warning("rebuilding the corrupt artefact %s (%s)", target, problem)
            os.replace(target, parent / f"{_CORRUPT}{recipe.name}-{uuid.uuid4().hex[:8]}")
        _clear_leftovers(parent, recipe.name)
        staging = parent / f"{_STAGING}{recipe.name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(mode=0o755)
        staging.chmod(0o755)  # readable by the non-root user that serves what root built (not via umask: racy)
        try:
            build(staging)
            _write_meta(staging, recipe, info or {})
            try:
                os.replace(staging, target)  # target is absent: an atomic publish
            except OSError:
                # Published meanwhile by a builder that could not see the lock (a file system
                # whose flock is not shared between hosts): theirs is as good, keep it.
                if check(target, recipe):
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _clear_leftovers(parent, recipe.name)
        return target
    finally:
        lock.release()
