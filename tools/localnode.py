"""Local single-node OpenSearch / Elasticsearch for tests, the demo and the eval tool.

The integ-test zips both projects publish to Maven Central are downloaded once into
`${RESCORE_CACHE_DIR:-~/.cache/rescore-sidecar}/engines`, unpacked, and started with a
per-node temporary config/data/log directory on a free loopback port: security off,
disk watermarks off, a small heap. OpenSearch also gets the standard modules its integ-test
zip leaves out (lang-painless, analysis-common, mapper-extras, parent-join, reindex), built
from their Maven Central jars and cached beside the zip (see `OPENSEARCH_MODULES`).

    with local_node("opensearch") as node:
        requests.get(node.url)

`rescore-sidecar engine start|stop|status|download --engine opensearch|elasticsearch`
does the same from a shell (`start` leaves the node running until `stop`).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Iterator, Sequence

from rescore_sidecar.tools.download import DownloadError, download, stderr_progress
from rescore_sidecar.tools.waiting import WaitTimeout, wait_until

ENGINES = ("opensearch", "elasticsearch")

# The newest release of each major line the integ-test zips exist for on Maven Central.
# `--version 2` / `--version 8` pick these; any full version can be given too.
LATEST: dict[str, dict[str, str]] = {
    "opensearch": {"2": "2.19.6", "3": "3.6.0"},
    "elasticsearch": {"8": "8.19.21", "9": "9.2.0"},
}
# The major used when none is asked for. elasticsearch-py 9 only talks to Elasticsearch 9
# (it sends `compatible-with=9`), so that is the default where a Java 21+ runtime exists.
DEFAULT_MAJOR = {"opensearch": "2", "elasticsearch": "9"}

MAVEN_URL = "https://repo1.maven.org/maven2"
_ARTIFACT = {
    "opensearch": "org/opensearch/distribution/integ-test-zip/opensearch",
    "elasticsearch": "org/elasticsearch/distribution/integ-test-zip/elasticsearch",
}
# Environment variable each engine's launcher script reads its Java from.
_JAVA_ENV = {"opensearch": "OPENSEARCH_JAVA_HOME", "elasticsearch": "ES_JAVA_HOME"}
_JAVA_OPTS_ENV = {"opensearch": "OPENSEARCH_JAVA_OPTS", "elasticsearch": "ES_JAVA_OPTS"}
_CONF_ENV = {"opensearch": "OPENSEARCH_PATH_CONF", "elasticsearch": "ES_PATH_CONF"}


class EngineError(RuntimeError):
    """A local engine could not be downloaded, started or reached."""


def cache_dir() -> pathlib.Path:
    root = os.environ.get("RESCORE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "rescore-sidecar")
    return pathlib.Path(root) / "engines"


def resolve_version(engine: str, version: str | None = None) -> str:
    """Full version from None (default major), a major ("2", "9") or a full version."""
    _check_engine(engine)
    if not version:
        env = os.environ.get(f"RESCORE_{engine.upper()}_VERSION")
        version = env or DEFAULT_MAJOR[engine]
    if version in LATEST[engine]:
        return LATEST[engine][version]
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise EngineError(f"bad {engine} version {version!r}: give a major ({', '.join(LATEST[engine])}) or X.Y.Z")
    return version


def download_url(engine: str, version: str) -> str:
    base = os.environ.get("RESCORE_MAVEN_URL", MAVEN_URL).rstrip("/")
    return f"{base}/{_ARTIFACT[engine]}/{version}/{engine}-{version}.zip"


def required_java(engine: str, version: str) -> int:
    major = int(version.split(".")[0])
    if engine == "opensearch":
        return 21 if major >= 3 else 11
    return 21 if major >= 9 else 17


# --------------------------------------------------------------------------- Java

def _java_major(java_home: pathlib.Path) -> int | None:
    release = java_home / "release"
    try:
        m = re.search(r'JAVA_VERSION="(\d+)', release.read_text())
        if m:
            return int(m.group(1))
    except OSError:
        pass
    java = java_home / "bin" / "java"
    if not java.exists():
        return None
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    first = int(m.group(1))
    return int(m.group(2)) if first == 1 and m.group(2) else first


def find_java(engine: str, version: str) -> tuple[pathlib.Path, int]:
    """A Java home for the engine: `OPENSEARCH_JAVA_HOME`/`ES_JAVA_HOME`, else `JAVA_HOME`,
    else the oldest JDK under /usr/lib/jvm that is new enough (oldest = best tested)."""
    need = required_java(engine, version)
    explicit = os.environ.get(_JAVA_ENV[engine])
    if explicit:
        home = pathlib.Path(explicit)
        major = _java_major(home)
        if major is None or major < need:
            raise EngineError(f"{_JAVA_ENV[engine]}={explicit} is Java {major}; {engine} {version} needs Java {need}+")
        return home, major
    candidates: list[pathlib.Path] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(pathlib.Path(os.environ["JAVA_HOME"]))
    jvm_root = pathlib.Path("/usr/lib/jvm")
    if jvm_root.is_dir():
        candidates += sorted(p for p in jvm_root.iterdir() if p.is_dir() and not p.is_symlink())
    found: list[tuple[int, pathlib.Path]] = []
    for home in candidates:
        major = _java_major(home)
        if major is not None and major >= need and (home / "bin" / "java").exists():
            found.append((major, home))
    if not found:
        seen = ", ".join(str(c) for c in candidates) or "none"
        raise EngineError(f"{engine} {version} needs Java {need}+; none found (looked at JAVA_HOME and "
                          f"/usr/lib/jvm: {seen}); set {_JAVA_ENV[engine]}")
    major, home = min(found, key=lambda t: t[0])
    return home, major


def java_available(engine: str, version: str) -> bool:
    try:
        find_java(engine, version)
        return True
    except EngineError:
        return False


# --------------------------------------------------------------------------- download

@contextlib.contextmanager
def file_lock(path: pathlib.Path) -> Iterator[None]:
    """An exclusive lock on `path` (made if missing) across processes: one fills a shared cache, the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def install(engine: str, version: str | None = None, *, quiet: bool = True) -> pathlib.Path:
    """Downloads and unpacks the engine once; returns its home directory (cached)."""
    version = resolve_version(engine, version)
    root = cache_dir()
    home = root / f"{engine}-{version}"
    if (home / "bin" / engine).exists() and not _missing_modules(engine, home):
        return home
    with file_lock(root / f".{engine}-{version}.lock"):
        if (home / "bin" / engine).exists():
            # An install cached before the modules were added gets them now.
            _install_modules(engine, version, home, quiet=quiet)
            return home
        url = download_url(engine, version)
        zip_path = root / f"{engine}-{version}.zip"
        if not zip_path.exists():
            _download(url, zip_path, what=f"{engine} {version}", quiet=quiet)
        staging = pathlib.Path(tempfile.mkdtemp(dir=root, prefix=f".{engine}-{version}.unpack."))
        try:
            try:
                with zipfile.ZipFile(zip_path) as zf:
                    zf.extractall(staging)
            except zipfile.BadZipFile as exc:
                zip_path.unlink(missing_ok=True)  # a corrupt cache entry must not stick
                raise EngineError(f"{zip_path} (from {url}) is not a valid zip: {exc}") from exc
            (top,) = [p for p in staging.iterdir() if p.is_dir()]
            for script in (top / "bin").iterdir():
                script.chmod(0o755)
            _install_modules(engine, version, top, quiet=quiet)
            os.replace(top, home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return home


def _download(url: str, dest: pathlib.Path, *, what: str, quiet: bool = True) -> None:
    """Fetches `url` into `dest` atomically, retrying transient network errors (tools/download.py);
    not quiet: the URL, then progress (bytes, percent, rate) on stderr."""
    if not quiet:
        print(f"  downloading {url}", file=sys.stderr, flush=True)
    try:
        download(url, dest, what=what, report=None if quiet else stderr_progress())
    except DownloadError as exc:
        raise EngineError(str(exc)) from exc


# --------------------------------------------------------------------------- standard modules

@dataclasses.dataclass(frozen=True)
class _Module:
    artifact: str                      # org.opensearch.plugin:<artifact> on Maven Central
    extends: tuple[str, ...] = ()
    policy: str = ""                   # plugin-security.policy (not published; copied from the sources)


# The modules every OpenSearch distribution ships and the integ-test zip leaves out (it has only
# transport-netty4). Maven Central has each module's jar and a pom naming its dependencies, not the
# module zip, so the module folder (jars, descriptor, policy) is assembled here, as the build does.
# Elasticsearch publishes no module jars after 7.x, so its nodes stay as the zip has them.
OPENSEARCH_MODULES: dict[str, _Module] = {
    "lang-painless": _Module("lang-painless", policy=(
        'grant {\n  permission java.lang.RuntimePermission "createClassLoader";\n'
        '  permission java.lang.RuntimePermission "getClassLoader";\n};\n')),
    "analysis-common": _Module("analysis-common", extends=("lang-painless",)),
    "mapper-extras": _Module("mapper-extras-client"),
    "parent-join": _Module("parent-join-client"),
    "reindex": _Module("reindex-client", policy=(
        'grant {\n  permission java.net.SocketPermission "*", "connect";\n};\n'
        'grant codeBase "${codebase.opensearch-rest-client}" {\n'
        '  permission java.net.NetPermission "getProxySelector";\n};\n'
        'grant codeBase "${codebase.httpasyncclient}" {\n'
        '  permission java.net.NetPermission "getProxySelector";\n};\n')),
}


def standard_modules(engine: str) -> tuple[str, ...]:
    """Names of the standard modules `install` adds to the engine's integ-test zip."""
    return tuple(OPENSEARCH_MODULES) if engine == "opensearch" else ()


def _missing_modules(engine: str, home: pathlib.Path) -> list[str]:
    return [name for name in standard_modules(engine) if not (home / "modules" / name).is_dir()]


def _maven_file(group: str, artifact: str, version: str, ext: str, *, quiet: bool) -> pathlib.Path:
    """A Maven Central file, downloaded once into the cache (`engines/maven/...`)."""
    rel = f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.{ext}"
    path = cache_dir() / "maven" / rel
    if not path.exists():
        base = os.environ.get("RESCORE_MAVEN_URL", MAVEN_URL).rstrip("/")
        _download(f"{base}/{rel}", path, what=f"{group}:{artifact}:{version}", quiet=quiet)
    return path


def _pom_dependencies(pom: pathlib.Path) -> list[tuple[str, str, str]]:
    """(group, artifact, version) of the pom's compile/runtime, non-optional dependencies."""
    import xml.etree.ElementTree as ET

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    deps = []
    for dep in ET.parse(pom).getroot().findall("m:dependencies/m:dependency", ns):
        field = {child.tag.split("}")[1]: (child.text or "").strip() for child in dep}
        if field.get("scope", "compile") in ("compile", "runtime") and field.get("optional") != "true":
            deps.append((field["groupId"], field["artifactId"], field["version"]))
    return deps


def _module_jars(artifact: str, version: str, provided: set[str], *, quiet: bool) -> list[pathlib.Path]:
    """The module's jar and its dependencies' jars, less those the engine's lib/ has.
    OpenSearch's own artifacts are followed to their dependencies; third-party ones are leaves
    (their poms list what the OpenSearch poms already name)."""
    jars: list[pathlib.Path] = []
    todo, seen = [("org.opensearch.plugin", artifact, version)], set()
    while todo:
        group, name, ver = todo.pop(0)
        if name in seen or name in provided:
            continue
        seen.add(name)
        jars.append(_maven_file(group, name, ver, "jar", quiet=quiet))
        if group.startswith("org.opensearch"):
            todo += _pom_dependencies(_maven_file(group, name, ver, "pom", quiet=quiet))
    return jars


def _plugin_class(jar: pathlib.Path) -> str:
    """The module's plugin class: the one top-level `*Plugin` class outside the SPI packages."""
    with zipfile.ZipFile(jar) as zf:
        names = [n for n in zf.namelist() if re.fullmatch(r"org/opensearch/[\w/]+Plugin\.class", n)
                 and "/spi/" not in n]
    if len(names) != 1:
        raise EngineError(f"cannot tell the plugin class of {jar.name}: {names or 'none'}")
    return names[0][: -len(".class")].replace("/", ".")


def _install_modules(engine: str, version: str, home: pathlib.Path, *, quiet: bool = True) -> None:
    missing = _missing_modules(engine, home)
    if not missing:
        return
    provided = {m.group(1) for p in (home / "lib").glob("*.jar")
                if (m := re.fullmatch(r"(.+?)-\d[^/]*\.jar", p.name))}
    for name in missing:
        module = OPENSEARCH_MODULES[name]
        jars = _module_jars(module.artifact, version, provided, quiet=quiet)
        (home / "modules").mkdir(exist_ok=True)
        # Assembled beside the install, not inside modules/: a node starting meanwhile must not
        # find a half-built folder there.
        staging = pathlib.Path(tempfile.mkdtemp(dir=home.parent, prefix=f".{name}.module."))
        try:
            for jar in jars:
                shutil.copyfile(jar, staging / jar.name)
                (staging / jar.name).chmod(0o644)  # the engine may run as another user
            (staging / "plugin-descriptor.properties").write_text(
                f"description=The {name} module (from Maven Central)\nversion={version}\nname={name}\n"
                f"classname={_plugin_class(jars[0])}\njava.version=11\nopensearch.version={version}\n"
                f"custom.foldername=\nextended.plugins={','.join(module.extends)}\n"
                "has.native.controller=false\n")
            if module.policy:
                (staging / "plugin-security.policy").write_text(module.policy)
            staging.chmod(0o755)
            os.replace(staging, home / "modules" / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- node

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_json(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _tail(path: pathlib.Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclasses.dataclass
class LocalNode:
    """A running single-node cluster. `url` is its HTTP address (`http://127.0.0.1:PORT`)."""

    engine: str
    version: str
    url: str
    port: int
    pid: int
    workdir: pathlib.Path
    java_home: pathlib.Path
    java_version: int
    process: subprocess.Popen | None = dataclasses.field(default=None, repr=False)
    # How the node was launched (argv, env, user), so `restart_node` can start it again.
    launch: dict | None = dataclasses.field(default=None, repr=False)

    @property
    def log_path(self) -> pathlib.Path:
        return self.workdir / "console.log"

    def log_tail(self, lines: int = 40) -> str:
        parts = [_tail(self.log_path, lines)]
        server_log = self.workdir / "logs" / "local.log"  # the engine's own log, named after the cluster
        if server_log.exists():
            parts.append(_tail(server_log, lines))
        return "\n".join(parts)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.pid, 0)
            return True
        except OSError:
            return False

    def health(self, timeout: float = 5.0) -> dict:
        return _http_json(f"{self.url}/_cluster/health", timeout)

    def stop(self, grace_seconds: float = 30.0, *, keep_dir: bool = False) -> None:
        """SIGTERM, then SIGKILL after `grace_seconds`; removes the node's directory."""
        _terminate(self.pid, self.process, grace_seconds)
        if not keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def client(self, **kwargs):
        """A synchronous opensearch-py / elasticsearch-py client for this node."""
        if self.engine == "opensearch":
            from opensearchpy import OpenSearch

            return OpenSearch(self.url, **kwargs)
        from elasticsearch import Elasticsearch

        return Elasticsearch(self.url, **kwargs)

    def async_client(self, **kwargs):
        """An asyncio opensearch-py / elasticsearch-py client for this node."""
        if self.engine == "opensearch":
            from opensearchpy import AsyncOpenSearch

            return AsyncOpenSearch(self.url, **kwargs)
        from elasticsearch import AsyncElasticsearch

        return AsyncElasticsearch(self.url, **kwargs)

    def to_json(self) -> dict:
        return {"engine": self.engine, "version": self.version, "url": self.url, "port": self.port,
                "pid": self.pid, "workdir": str(self.workdir), "java_home": str(self.java_home),
                "java_version": self.java_version}


def _terminate(pid: int, process: subprocess.Popen | None, grace_seconds: float) -> None:
    def gone() -> bool:
        if process is not None:
            return process.poll() is not None
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        # A zombie child of someone else still answers kill(0); /proc tells us it is dead.
        with contextlib.suppress(OSError):
            if pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        return False

    if gone():
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)  # the launcher script and the JVM share the group
    try:
        wait_until(gone, timeout=grace_seconds, what=f"process {pid} to exit", first=0.1, longest=0.5)
        return
    except WaitTimeout:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if process is not None:
        process.wait(timeout=10)


def _unprivileged_user() -> tuple[int, int] | None:
    """(uid, gid) to run the engine as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(os.environ.get("RESCORE_ENGINE_USER", "nobody"))
    except KeyError as exc:
        raise EngineError("running as root and no unprivileged user to run the engine as; "
                          "set RESCORE_ENGINE_USER") from exc
    return entry.pw_uid, entry.pw_gid


def _linked_copy(src: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:  # another file system
            shutil.copy2(a, b)

    shutil.copytree(src, dest, copy_function=link_or_copy, symlinks=True)
    return dest


def _node_settings(engine: str, major: int, port: int, transport_port: int, workdir: pathlib.Path,
                   home: pathlib.Path) -> list[str]:
    settings = {
        "cluster.name": "local",
        "node.name": "local-0",
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": str(port),
        "transport.port": str(transport_port),
        "path.data": str(workdir / "data"),
        "path.logs": str(workdir / "logs"),
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }
    modules = {p.name for p in (home / "modules").iterdir()} if (home / "modules").is_dir() else set()
    if engine == "elasticsearch":
        if any(m.startswith("x-pack-security") for m in modules):
            settings["xpack.security.enabled"] = "false"
        if "ingest-geoip" in modules:
            settings["ingest.geoip.downloader.enabled"] = "false"  # would reach out to the internet
    return [f"-E{k}={v}" for k, v in settings.items()]


def start_node(engine: str, version: str | None = None, *, heap: str = "512m", timeout: float = 180.0,
               detach: bool = False, quiet: bool = True) -> LocalNode:
    """Downloads (once; `quiet=False` shows its progress), starts a node and waits until its health
    is yellow or green."""
    version = resolve_version(engine, version)
    home = install(engine, version, quiet=quiet)
    java_home, java_major = find_java(engine, version)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"rescore-{engine}-{version}-"))
    shutil.copytree(home / "config", workdir / "config")  # keystore & co. are written into the config dir
    for sub in ("data", "logs", "tmp"):
        (workdir / sub).mkdir()
    run_as = _unprivileged_user()
    if run_as is not None:
        # Both engines refuse to run as root. Run as `nobody` from a hard-linked copy of the
        # install (the cache may sit in root's home, which nobody cannot traverse).
        # Directories of the copy are new (only files are links), so handing them over is safe:
        # the launcher writes gc logs relative to the install.
        home = _linked_copy(home, workdir / "home")
        for path in (workdir, *workdir.rglob("*")):
            if path.is_dir() and not path.is_symlink() or path.is_relative_to(workdir / "config"):
                os.chown(path, *run_as, follow_symlinks=False)
    port, transport_port = free_port(), free_port()
    env = dict(os.environ)
    env[_JAVA_ENV[engine]] = str(java_home)
    env["JAVA_HOME"] = str(java_home)
    env[_JAVA_OPTS_ENV[engine]] = f"-Xms{heap} -Xmx{heap} -XX:ActiveProcessorCount=1"
    env[_CONF_ENV[engine]] = str(workdir / "config")
    env["ES_TMPDIR" if engine == "elasticsearch" else "OPENSEARCH_TMPDIR"] = str(workdir / "tmp")
    args = [str(home / "bin" / engine)] + _node_settings(engine, int(version.split(".")[0]), port,
                                                         transport_port, workdir, home)
    user_kwargs = {} if run_as is None else {"user": run_as[0], "group": run_as[1], "extra_groups": []}
    launch = {"args": args, "env": env, "user_kwargs": user_kwargs}
    try:
        proc = _launch(workdir, launch)
    except OSError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise EngineError(f"could not run {args[0]} with Java {java_major} at {java_home}: {exc}") from exc
    node = LocalNode(engine=engine, version=version, url=f"http://127.0.0.1:{port}", port=port, pid=proc.pid,
                     workdir=workdir, java_home=java_home, java_version=java_major, process=proc, launch=launch)
    try:
        _wait_healthy(node, timeout)
    except EngineError as exc:
        tail = node.log_tail()
        node.stop(grace_seconds=10)
        raise EngineError(f"{engine} {version} (from {download_url(engine, version)}, Java {java_major} at "
                          f"{java_home}) {exc} before becoming healthy (waited up to {timeout:.0f}s); "
                          f"log tail:\n{tail}") from None
    except BaseException:
        node.stop(grace_seconds=10)
        raise
    if detach:
        node.process = None
    return node


def _launch(workdir: pathlib.Path, launch: dict) -> subprocess.Popen:
    with open(workdir / "console.log", "ab") as log:
        return subprocess.Popen(launch["args"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=launch["env"], cwd=workdir, start_new_session=True, **launch["user_kwargs"])


def restart_node(node: LocalNode, *, grace_seconds: float = 30.0, timeout: float = 180.0) -> LocalNode:
    """Stops the node (SIGTERM) and starts it again on the same ports with the same data; waits
    until healthy. Only for nodes this process started (`start_node` without `detach`)."""
    if node.launch is None:
        raise EngineError("restart_node needs a node started by start_node in this process")
    node.stop(grace_seconds, keep_dir=True)
    node.process = _launch(node.workdir, node.launch)
    node.pid = node.process.pid
    _wait_healthy(node, timeout)
    return node


def _wait_healthy(node: LocalNode, timeout: float) -> None:
    def exited() -> None:
        if not node.alive():
            raise EngineError(f"exited with status {node.process.poll() if node.process else '?'}")

    def healthy() -> bool:
        try:
            health = _http_json(f"{node.url}/_cluster/health?wait_for_status=yellow&timeout=2s", timeout=5)
        except (urllib.error.URLError, OSError, ValueError):
            return False  # not listening yet
        return health.get("status") in ("green", "yellow")

    try:
        wait_until(healthy, timeout=timeout, what=f"{node.engine} health", check=exited, first=0.25, longest=1.0)
    except WaitTimeout:
        raise EngineError("timed out") from None


@contextlib.contextmanager
def local_node(engine: str, version: str | None = None, **kwargs) -> Iterator[LocalNode]:
    """`with local_node("opensearch") as node: ...` — started on entry, stopped on exit."""
    node = start_node(engine, version, **kwargs)
    try:
        yield node
    finally:
        node.stop()


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


# --------------------------------------------------------------------------- CLI

def _state_path(engine: str) -> pathlib.Path:
    return cache_dir() / "running" / f"{engine}.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rescore-sidecar engine",
                                     description="Download, start and stop a local single-node engine.")
    parser.add_argument("action", choices=["start", "stop", "status", "download"])
    parser.add_argument("--engine", choices=ENGINES, required=True)
    parser.add_argument("--version", default=None,
                        help="a major (opensearch: 2, 3; elasticsearch: 8, 9) or a full X.Y.Z version")
    parser.add_argument("--heap", default="512m")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    state = _state_path(args.engine)
    try:
        if args.action == "download":
            print(install(args.engine, args.version, quiet=False))
            return 0
        if args.action == "start":
            if state.exists():
                info = json.loads(state.read_text())
                with contextlib.suppress(OSError):
                    os.kill(info["pid"], 0)
                    print(f"{args.engine} already running at {info['url']} (pid {info['pid']})", file=sys.stderr)
                    return 1
            node = start_node(args.engine, args.version, heap=args.heap, timeout=args.timeout, detach=True)
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps(node.to_json()))
            print(node.url)
            return 0
        if not state.exists():
            print(f"{args.engine}: not running", file=sys.stderr)
            return 1 if args.action == "stop" else 3
        info = json.loads(state.read_text())
        if args.action == "status":
            try:
                health = _http_json(f"{info['url']}/_cluster/health", timeout=5)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                print(f"{args.engine} {info['version']} at {info['url']} (pid {info['pid']}): unreachable: {exc}")
                return 3
            print(f"{args.engine} {info['version']} at {info['url']} (pid {info['pid']}): {health.get('status')}")
            return 0
        _terminate(info["pid"], None, 30.0)
        shutil.rmtree(info["workdir"], ignore_errors=True)
        state.unlink(missing_ok=True)
        print(f"{args.engine} stopped")
        return 0
    except EngineError as exc:
        print(f"rescore-sidecar engine: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
