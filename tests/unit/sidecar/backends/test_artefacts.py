"""Artefacts shared by replicas: one builder, an atomic publish under a name that never changes,
verified on read, a corrupt one rebuilt, a killed builder leaving nothing in the way."""
from __future__ import annotations

import logging
import multiprocessing
import os
import pathlib
import signal
import threading
import time

import pytest
from filelock import FileLock

from rescore_sidecar.sidecar.backends import artefacts
from rescore_sidecar.sidecar.backends.artefacts import ArtefactError, Recipe, check, obtain

RECIPE = Recipe("cross-encoder-fp32", inputs="abc", options={"export": 1}, files=("model.xml", "model.bin"))


def _build(staging: pathlib.Path, *, delay: float = 0.0, log_to: pathlib.Path | None = None) -> None:
    """A stand-in for an export: two files, slow enough for racers to overlap."""
    if log_to is not None:
        with open(log_to, "a") as handle:
            handle.write(f"{os.getpid()}:{threading.get_ident()}\n")
    (staging / "model.xml").write_text("<net/>")
    time.sleep(delay)
    (staging / "model.bin").write_bytes(os.urandom(4096))


def _leftovers(parent: pathlib.Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((".staging-", ".corrupt-")))


def test_the_name_is_the_fingerprint_of_inputs_and_options():
    assert RECIPE.name.startswith("cross-encoder-fp32-") and len(RECIPE.name) == len("cross-encoder-fp32-") + 16
    assert Recipe("cross-encoder-fp32", "abc", {"export": 1}, ("model.xml",)).name == RECIPE.name
    assert Recipe("cross-encoder-fp32", "abd", {"export": 1}, ("model.xml",)).name != RECIPE.name
    assert Recipe("cross-encoder-fp32", "abc", {"export": 2}, ("model.xml",)).name != RECIPE.name


def test_a_changed_checkpoint_file_changes_the_inputs_fingerprint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    before = artefacts.files_fingerprint(str(tmp_path), None)
    assert artefacts.files_fingerprint(str(tmp_path), None) == before
    assert artefacts.files_fingerprint(str(tmp_path), "v2") != before
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert artefacts.files_fingerprint(str(tmp_path), None) != before
    assert artefacts.files_fingerprint("org/model", None) != artefacts.files_fingerprint("org/other", None)


def test_built_once_then_found_without_building_or_touching_it(tmp_path):
    target = tmp_path / RECIPE.name
    assert obtain(RECIPE, target, _build) == target
    assert check(target, RECIPE) == "" and _leftovers(tmp_path) == []
    inode = (target / "model.bin").stat().st_ino

    def must_not_build(staging):
        raise AssertionError("a valid artefact was rebuilt")

    assert obtain(RECIPE, target, must_not_build) == target
    assert (target / "model.bin").stat().st_ino == inode


def test_threads_racing_build_once_and_the_others_wait_with_a_log_line(tmp_path, caplog):
    builds, target, results = tmp_path / "builds", tmp_path / "cache" / RECIPE.name, []

    def start():
        results.append(obtain(RECIPE, target, lambda staging: _build(staging, delay=0.5, log_to=builds)))

    with caplog.at_level(logging.INFO, logger=artefacts.__name__):
        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == [target] * 4
    assert len(builds.read_text().splitlines()) == 1
    assert "waiting for another replica to build" in caplog.text
    assert check(target, RECIPE) == "" and _leftovers(target.parent) == []


def _racer(target: str, builds: str, go, results) -> None:
    go.wait(10)
    def build(staging):
        _build(staging, delay=0.5, log_to=pathlib.Path(builds))

    folder = obtain(RECIPE, pathlib.Path(target), build)
    results.put((str(folder), check(folder, RECIPE)))


def test_processes_racing_build_once_and_all_get_the_whole_artefact(tmp_path):
    context = multiprocessing.get_context("fork")  # fork: no re-import of the test module, fast
    go, results = context.Event(), context.Queue()
    target, builds = tmp_path / RECIPE.name, tmp_path / "builds"
    procs = [context.Process(target=_racer, args=(str(target), str(builds), go, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    go.set()
    got = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(10)
        assert proc.exitcode == 0
    assert got == [(str(target), "")] * 4
    assert len(builds.read_text().splitlines()) == 1


def _killed_mid_build(target: str) -> None:
    def build(staging):
        (staging / "model.xml").write_text("<net/>")
        (staging / "model.bin").write_bytes(b"half a")
        os.kill(os.getpid(), signal.SIGKILL)  # the pod is OOM-killed or evicted while exporting

    obtain(RECIPE, pathlib.Path(target), build)


def test_a_builder_killed_mid_build_leaves_nothing_a_later_start_trips_over(tmp_path, caplog):
    target = tmp_path / RECIPE.name
    proc = multiprocessing.get_context("fork").Process(target=_killed_mid_build, args=(str(target),))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    assert not target.exists() and len(_leftovers(tmp_path)) == 1  # its staging folder, never published
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger=artefacts.__name__):
        assert obtain(RECIPE, target, _build, timeout=5) == target
    assert time.monotonic() - started < 5  # the dead builder's lock went with it
    assert "waiting for another replica" not in caplog.text
    assert check(target, RECIPE) == "" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "meta"])
def test_a_corrupt_artefact_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    target = obtain(RECIPE, tmp_path / RECIPE.name, _build)
    weights = target / "model.bin"
    if damage == "truncate":
        os.truncate(weights, 100)
    elif damage == "flip":  # same size, other bytes: the sha256 tells
        weights.write_bytes(bytes(b ^ 1 for b in weights.read_bytes()))
    elif damage == "delete":
        weights.unlink()
    else:
        (target / "meta.json").write_text("{not json")
    assert check(target, RECIPE) not in ("", "absent")
    with caplog.at_level(logging.WARNING, logger=artefacts.__name__):
        assert obtain(RECIPE, target, _build) == target
    assert "rebuilding the corrupt artefact" in caplog.text
    assert check(target, RECIPE) == "" and _leftovers(tmp_path) == []


def test_a_read_only_copy_is_used_and_never_written(tmp_path):
    baked = obtain(RECIPE, tmp_path / "image" / RECIPE.name, _build)  # prepare-model at image build time
    image = baked.parent
    os.chmod(baked, 0o555)
    os.chmod(image, 0o555)
    try:
        before = sorted(p.name for p in image.iterdir())
        cache = tmp_path / "cache" / RECIPE.name
        assert obtain(RECIPE, cache, _build, elsewhere=[baked]) == baked
        assert sorted(p.name for p in image.iterdir()) == before  # no lock, no staging beside it
        assert not cache.parent.exists()
    finally:
        os.chmod(image, 0o755)
        os.chmod(baked, 0o755)


def test_a_corrupt_read_only_copy_is_left_alone_and_built_in_the_cache(tmp_path, caplog):
    baked = obtain(RECIPE, tmp_path / "image" / RECIPE.name, _build)
    os.truncate(baked / "model.bin", 10)
    cache = tmp_path / "cache" / RECIPE.name
    with caplog.at_level(logging.WARNING, logger=artefacts.__name__):
        assert obtain(RECIPE, cache, _build, elsewhere=[baked]) == cache
    assert f"the artefact in {baked} is corrupt" in caplog.text
    assert (baked / "model.bin").stat().st_size == 10 and check(cache, RECIPE) == ""


def test_a_failed_build_publishes_nothing_and_the_next_start_builds(tmp_path):
    target = tmp_path / RECIPE.name

    def fails(staging):
        (staging / "model.xml").write_text("<net/>")
        raise ValueError("export failed")

    with pytest.raises(ValueError, match="export failed"):
        obtain(RECIPE, target, fails)
    assert not target.exists() and _leftovers(tmp_path) == []
    with pytest.raises(ArtefactError, match="wrote no model.bin"):
        obtain(RECIPE, target, lambda staging: (staging / "model.xml").write_text("<net/>"))
    assert not target.exists()
    assert obtain(RECIPE, target, _build) == target


def test_waiting_longer_than_the_timeout_is_a_clear_error(tmp_path):
    target = tmp_path / RECIPE.name
    with FileLock(tmp_path / f".{RECIPE.name}.lock"):  # another replica, still building
        with pytest.raises(ArtefactError, match=r"waited 0s for another replica to build .*\.lock"):
            obtain(RECIPE, target, _build, timeout=0.2)
    assert not target.exists()


def test_a_folder_under_another_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must be published under that name"):
        obtain(RECIPE, tmp_path / "cross-encoder-fp32", _build)


def test_published_meanwhile_by_a_builder_that_missed_the_lock_is_kept(tmp_path):
    """On a file system whose flock is not shared between hosts two builders may run: the
    later one keeps the published artefact instead of failing or replacing it."""
    target = tmp_path / "shared" / RECIPE.name

    def racing_build(staging):
        other = obtain(RECIPE, tmp_path / "other-host" / RECIPE.name, _build)
        os.replace(other, target)  # the other host publishes first
        _build(staging)

    assert obtain(RECIPE, target, racing_build) == target
    inode = (target / "model.bin").stat().st_ino
    assert check(target, RECIPE) == "" and _leftovers(target.parent) == []
    assert obtain(RECIPE, target, _build) == target and (target / "model.bin").stat().st_ino == inode
