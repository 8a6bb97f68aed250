"""Downloads of the tools (the engine zips and module jars from Maven Central): progress a newcomer
can see (bytes, percent, rate) and a tenacity retry on transient network errors.

    download(url, dest, what="opensearch 2.19.6", report=stderr_progress())

writes `dest` atomically (a half-written file never takes its name). A transient failure (connection
reset or refused, timeout, a cut-off body, HTTP 429 / 5xx) is retried from the start with a jittered
exponential backoff, `attempts` times in all; anything else (404, a disk error) fails at once with
DownloadError naming the URL.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import pathlib
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Callable

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

CHUNK = 256 * 1024
Report = Callable[[str], None]


class DownloadError(OSError):
    """The download failed for good; the message names what, the URL and why."""


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same URL again may succeed."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    if isinstance(exc, urllib.error.URLError):
        return isinstance(exc.reason, (ConnectionError, TimeoutError, OSError))
    return isinstance(exc, (ConnectionError, TimeoutError, http.client.IncompleteRead,
                            http.client.RemoteDisconnected))


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def progress_line(what: str, done: int, total: int | None, seconds: float, *, finished: bool = False) -> str:
    """`downloading opensearch 2.19.6: 45.2 MB / 120.3 MB (38%), 5.1 MB/s` (or `downloaded ... in 23 s`)."""
    rate = f"{human_bytes(done / seconds)}/s" if seconds > 0 else "–/s"
    if finished:
        return f"downloaded {what}: {human_bytes(done)} in {seconds:.1f} s ({rate})"
    size = f"{human_bytes(done)} / {human_bytes(total)} ({100 * done / total:.0f}%)" if total else human_bytes(done)
    return f"downloading {what}: {size}, {rate}"


def stderr_progress(every: float = 2.0) -> Report:
    """Progress on stderr: one line redrawn in place on a terminal, a line every `every` s in a log."""
    tty = sys.stderr.isatty()

    def report(line: str) -> None:
        if tty:
            end = "\n" if line.startswith(("downloaded", "retrying")) else ""
            print(f"\r\033[K  {line}", end=end, file=sys.stderr, flush=True)
        else:
            print(f"  {line}", file=sys.stderr, flush=True)
    report.every = 0.2 if tty else every  # type: ignore[attr-defined]
    return report


def _fetch(url: str, dest: pathlib.Path, what: str, report: Report | None, every: float, timeout: float) -> int:
    """One attempt: streams `url` into a temporary file beside `dest`, then renames it."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        started = last = time.monotonic()
        done = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                now = time.monotonic()
                if report and now - last >= every:
                    report(progress_line(what, done, total, now - started))
                    last = now
            if total is not None and done < total:
                raise http.client.IncompleteRead(b"", total - done)
        os.replace(tmp, dest)
        if report:
            report(progress_line(what, done, total, time.monotonic() - started, finished=True))
        return done
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def download(url: str, dest: str | os.PathLike, *, what: str, report: Report | None = None,
             every: float | None = None, attempts: int = 4, timeout: float = 60.0,
             first_wait: float = 1.0, longest_wait: float = 15.0) -> int:
    """Fetches `url` into `dest`; returns the bytes written. `report` gets progress lines at most
    every `every` seconds (default: the reporter's own `every`, else 2 s) and a final one."""
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    every = every if every is not None else getattr(report, "every", 2.0)

    def retrying_note(state) -> None:
        if report:
            report(f"retrying {what} (attempt {state.attempt_number + 1} of {attempts}) after: {state.outcome.exception()}")

    retrying = Retrying(stop=stop_after_attempt(attempts), retry=retry_if_exception(is_transient),
                        wait=wait_exponential(multiplier=first_wait, max=longest_wait) + wait_random(0, first_wait),
                        before_sleep=retrying_note, reraise=True)
    try:
        return retrying(_fetch, url, dest, what, report, every, timeout)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"download of {what} failed: {url}: {exc}") from exc
