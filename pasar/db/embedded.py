"""A private PostgreSQL cluster under ``PASAR_HOME``, run with the machine's own server binaries.

Used when ``PASAR_DATABASE_URL`` is unset so a demo or development install needs no database admin. The
cluster listens on 127.0.0.1 only (no Unix socket), authenticates with SCRAM, and keeps its connection
details in ``home/pg/cluster.json`` (mode 0600). PostgreSQL refuses to run as root, so as root every server
binary runs as the ``postgres`` OS user via ``runuser``.

Layout::

    home/pg/              0755, so the server user can reach data/
    home/pg/data/         0700, owned by the server user
    home/pg/log/server.log
    home/pg/cluster.json  {"port": int, "owner_password": str}, 0600, owned by the invoking user
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import psycopg
from psycopg import sql

__all__ = ["ClusterStatus", "EmbeddedCluster", "EmbeddedPostgresError"]

_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
# Debian/Ubuntu install each major version side by side here; the highest one wins.
_DEBIAN_PG_LIB = Path("/usr/lib/postgresql")
_SERVER_OS_USER = "postgres"
_START_TIMEOUT_S = 60
_CONNECT_TIMEOUT_S = 30.0
_ORPHAN_WAIT_S = 15.0
_LOG_TAIL_LINES = 20

_NOT_FOUND_HINT = (
    "Install them (Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql@16`), "
    "point PASAR_PG_BIN_DIR at their directory, or set PASAR_DATABASE_URL to an existing server."
)

# Appended to postgresql.conf by initialisation. Sized for a laptop or small VM; durability stays on.
_EXTRA_CONF = """
# --- added by pasar (embedded cluster) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = 128MB
work_mem = 8MB
maintenance_work_mem = 128MB
max_wal_size = 1GB
fsync = on
synchronous_commit = on
logging_collector = off
log_line_prefix = '%m [%p] '
"""


class EmbeddedPostgresError(RuntimeError):
    """The embedded cluster cannot be set up or run; the message is shown to users verbatim."""


@dataclass(frozen=True)
class ClusterStatus:
    running: bool
    port: int | None
    pid: int | None
    data_dir: Path
    initialized: bool


@dataclass(frozen=True)
class _Config:
    port: int
    owner_password: str


class _StartFailed(Exception):
    """pg_ctl start failed; carries the log tail so the caller can decide to retry on another port."""

    def __init__(self, output: str, log_tail: str) -> None:
        super().__init__(output)
        self.output = output
        self.log_tail = log_tail


def find_bin_dir(bin_dir: Path | None = None) -> Path:
    """Return a directory holding initdb, pg_ctl and postgres, or raise with install instructions."""
    if bin_dir is not None:
        candidate = Path(bin_dir).expanduser()
        if _has_server_binaries(candidate):
            return candidate.resolve()
        raise EmbeddedPostgresError(
            f"PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in {candidate}. " + _NOT_FOUND_HINT
        )
    for candidate in _discovery_candidates():
        if _has_server_binaries(candidate):
            return candidate
    raise EmbeddedPostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. " + _NOT_FOUND_HINT
    )


def _discovery_candidates() -> Iterator[Path]:
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None:
        # Resolve first: /usr/local/bin/pg_ctl is often a lone symlink into the real bin dir.
        yield Path(pg_ctl).resolve().parent
        yield Path(pg_ctl).parent
    versions: list[tuple[int, Path]] = []
    if _DEBIAN_PG_LIB.is_dir():
        for child in _DEBIAN_PG_LIB.iterdir():
            with contextlib.suppress(ValueError):
                versions.append((int(child.name.split(".")[0]), child / "bin"))
    for _, path in sorted(versions, reverse=True):
        yield path
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                yield Path(out)


def _has_server_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) and (directory / name).is_file() for name in _SERVER_BINARIES)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    # SO_REUSEADDR like the postmaster, so TIME_WAIT leftovers of our own last run don't count as taken.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process; a killed postmaster may linger as a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs (macOS): trust kill()
    except OSError:
        return True
    # The state field follows the parenthesised command name, which may itself contain ')'.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _proc_cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


class EmbeddedCluster:
    """One PostgreSQL cluster in ``home/pg``; start/stop are idempotent and safe to call from any process."""

    OWNER = "pasar_owner"

    def __init__(self, home: Path, *, bin_dir: Path | None = None) -> None:
        self._home = Path(home).expanduser().resolve()
        self._pg_dir = self._home / "pg"
        self._data_dir = self._pg_dir / "data"
        self._staging_dir = self._pg_dir / "data.initdb"
        self._log_dir = self._pg_dir / "log"
        self._log_file = self._log_dir / "server.log"
        self._config_file = self._pg_dir / "cluster.json"
        self._lock_file = self._pg_dir / ".lock"
        self._requested_bin_dir = bin_dir
        self._bin_dir: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    # ----------------------------------------------------------------------------------------- public API

    def start(self) -> ClusterStatus:
        """Initialise on first use, start if not running, and return once a real connection succeeds."""
        self._binaries()  # fail early with install instructions
        self._prepare_layout()
        with self._locked():
            if not self._initialized():
                self._initialise()
            config = self._read_config()
            current = self.status()
            if not current.running:
                config = self._start_server(config)
            elif current.port is not None and current.port != config.port:
                # The server runs on another port than recorded (an interrupted start moved the record):
                # the running server is the truth.
                config = _Config(port=current.port, owner_password=config.owner_password)
                self._write_config(config)
            self._wait_until_connectable(config)
            return self.status()

    def stop(self) -> ClusterStatus:
        """Fast shutdown (rolls back open transactions, no crash recovery on next start)."""
        if not self._initialized():
            return self.status()
        with self._locked():
            if not self.status().running:
                self._remove_stale_pid_file()
                return self.status()
            result = self._run(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self._data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_S),
                    "stop",
                ],
                timeout=_START_TIMEOUT_S + 30,
            )
            final = self.status()
            if final.running:
                raise EmbeddedPostgresError(
                    f"The embedded PostgreSQL server in {self._data_dir} did not stop "
                    f"(pg_ctl: {result.stdout.strip() or result.stderr.strip()}). "
                    f"Last lines of {self._log_file}:\n{self._log_tail()}"
                )
            return final

    def status(self) -> ClusterStatus:
        """Read-only snapshot; never starts, initialises or repairs anything."""
        initialized = self._initialized()
        pid = self._pid_from_file() if initialized else None
        running = False
        if initialized and pid is not None:
            # pg_ctl only checks that the pid is alive; our own check also rejects zombies and reused pids.
            check = self._run([self._bin("pg_ctl"), "-D", str(self._data_dir), "status"], timeout=30)
            running = check.returncode == 0 and self._postmaster_state(pid) in ("ours", "unknown")
        port = self._port_from_pid_file() if running else None
        if port is None:
            port = self._stored_port()
        return ClusterStatus(
            running=running,
            port=port,
            pid=pid if running else None,
            data_dir=self._data_dir,
            initialized=initialized,
        )

    def owner_url(self, database: str = "postgres") -> str:
        """Superuser URL over loopback TCP; carries the password, so never log it."""
        config = self._read_config()
        return self._url(config, database)

    def ensure_database(self, name: str) -> None:
        """Create database ``name`` unless it exists; the cluster must already be running."""
        with self._maintenance_connection() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                # Another process may create it between the check and here; that is success too.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        with self._maintenance_connection() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # ------------------------------------------------------------------------------------ binaries / users

    def _binaries(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir(self._requested_bin_dir)
        return self._bin_dir

    def _bin(self, name: str) -> str:
        return str(self._binaries() / name)

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _server_user(self) -> pwd.struct_passwd | None:
        """The OS user the server runs as when we are root; None means 'the current user'."""
        if not self._as_root():
            return None
        try:
            return pwd.getpwnam(_SERVER_OS_USER)
        except KeyError:
            raise EmbeddedPostgresError(
                "PostgreSQL refuses to run as root and there is no 'postgres' OS user to run it as. "
                "Run Pasar as a non-root user, install PostgreSQL from your distribution (which creates the "
                "'postgres' user), or set PASAR_DATABASE_URL to an existing server."
            ) from None

    def _command(self, args: Sequence[str]) -> list[str]:
        if self._server_user() is not None:
            if shutil.which("runuser") is None:
                raise EmbeddedPostgresError(
                    "Running as root needs `runuser` (util-linux) to start PostgreSQL as the 'postgres' user. "
                    "Install util-linux, run Pasar as a non-root user, or set PASAR_DATABASE_URL."
                )
            return ["runuser", "-u", _SERVER_OS_USER, "--", *args]
        return list(args)

    def _run(self, args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        # cwd inside our tree: the server user may not be allowed into the caller's cwd, and pg_ctl minds.
        cwd = self._pg_dir if self._pg_dir.is_dir() else Path("/")
        try:
            return subprocess.run(
                self._command(args), capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedPostgresError(
                f"`{' '.join(args)}` did not finish within {timeout:.0f}s. "
                f"Last lines of {self._log_file}:\n{self._log_tail()}"
            ) from exc

    def _chown_to_server(self, path: Path) -> None:
        user = self._server_user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    # ---------------------------------------------------------------------------------------------- layout

    def _prepare_layout(self) -> None:
        self._pg_dir.mkdir(parents=True, exist_ok=True)
        self._pg_dir.chmod(0o755)
        self._log_dir.mkdir(exist_ok=True)
        if self._server_user() is not None:
            # The server user only needs to pass through home, not list it: add search bits, nothing else.
            self._home.chmod(self._home.stat().st_mode & 0o7777 | 0o011)
            self._log_dir.chmod(0o755)
            self._chown_to_server(self._log_dir)
            if self._log_file.exists():
                self._chown_to_server(self._log_file)
            self._check_server_can_traverse()

    def _check_server_can_traverse(self) -> None:
        if self._run(["test", "-x", str(self._pg_dir)], timeout=30).returncode == 0:
            return
        blocker = self._pg_dir
        for ancestor in reversed([self._pg_dir, *self._pg_dir.parents]):
            if self._run(["test", "-x", str(ancestor)], timeout=30).returncode != 0:
                blocker = ancestor
                break
        raise EmbeddedPostgresError(
            f"The PostgreSQL server runs as the '{_SERVER_OS_USER}' OS user, which cannot enter {blocker} "
            f"on the way to {self._pg_dir}. Allow it through (`chmod o+x {blocker}`) or set PASAR_HOME to "
            "a directory it can reach, e.g. under /var/lib/pasar."
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Serialises init/start/stop between processes (API and workers may all start the cluster).
        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _initialized(self) -> bool:
        return (self._data_dir / "PG_VERSION").is_file()

    # ------------------------------------------------------------------------------------------ cluster.json

    def _read_config(self) -> _Config:
        try:
            raw = json.loads(self._config_file.read_text())
            port, password = raw["port"], raw["owner_password"]
            if not isinstance(port, int) or not isinstance(password, str) or not password:
                raise TypeError("bad types")
        except FileNotFoundError:
            if not self._initialized():
                raise EmbeddedPostgresError(
                    f"The embedded PostgreSQL cluster in {self._data_dir} has not been created yet; "
                    "start it first (EmbeddedCluster.start())."
                ) from None
            raise EmbeddedPostgresError(
                f"{self._config_file} is missing, so the embedded cluster's owner password is unknown. "
                f"Restore the file, or remove {self._pg_dir} to begin again (this deletes the embedded "
                "database)."
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmbeddedPostgresError(
                f"{self._config_file} is unreadable or malformed ({exc}). Restore it, or remove "
                f"{self._pg_dir} to begin again (this deletes the embedded database)."
            ) from None
        return _Config(port=port, owner_password=password)

    def _write_config(self, config: _Config) -> None:
        # Write-then-rename so a crash never leaves a truncated file holding the only copy of the password.
        fd, tmp = tempfile.mkstemp(dir=self._pg_dir, prefix=".cluster.", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"port": config.port, "owner_password": config.owner_password}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self._config_file)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _stored_port(self) -> int | None:
        try:
            port = json.loads(self._config_file.read_text()).get("port")
        except (OSError, ValueError, AttributeError):
            return None
        return port if isinstance(port, int) else None

    # ------------------------------------------------------------------------------------------ initdb

    def _initialise(self) -> None:
        """initdb into a staging dir and rename it into place, so a failure never leaves a half cluster."""
        if self._staging_dir.exists():
            shutil.rmtree(self._staging_dir)
        if self._data_dir.exists():
            # No PG_VERSION: not a usable cluster; only an empty dir is safe to throw away.
            if any(self._data_dir.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self._data_dir} exists but is not a PostgreSQL data directory. Move it away or "
                    "delete it, then start again."
                )
            self._data_dir.rmdir()
        password = secrets.token_urlsafe(32)
        try:
            self._initdb(password)
            with (self._staging_dir / "postgresql.conf").open("a") as conf:
                conf.write(_EXTRA_CONF)
            self._write_config(_Config(port=_free_port(), owner_password=password))
            self._staging_dir.rename(self._data_dir)
        except BaseException:
            shutil.rmtree(self._staging_dir, ignore_errors=True)
            raise

    def _initdb(self, password: str) -> None:
        fd, pwfile = tempfile.mkstemp(dir=self._pg_dir, prefix=".pwfile.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
            self._chown_to_server(Path(pwfile))
            errors: list[str] = []
            for locale in ("C.UTF-8", "C"):
                self._staging_dir.mkdir(mode=0o700)
                self._chown_to_server(self._staging_dir)
                result = self._run(
                    [
                        self._bin("initdb"),
                        "-D",
                        str(self._staging_dir),
                        "-U",
                        self.OWNER,
                        f"--pwfile={pwfile}",
                        "--auth-local=scram-sha-256",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        f"--locale={locale}",
                    ],
                    timeout=300,
                )
                if result.returncode == 0:
                    return
                errors.append(f"--locale={locale}: {(result.stderr or result.stdout).strip()}")
                shutil.rmtree(self._staging_dir, ignore_errors=True)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pwfile)
        raise EmbeddedPostgresError(
            f"Creating the embedded PostgreSQL cluster in {self._data_dir} failed (initdb):\n"
            + "\n".join(errors)
            + "\nFix the problem above and start again, or set PASAR_DATABASE_URL to an existing server."
        )

    # ---------------------------------------------------------------------------------------- pid / crash

    def _pid_file_lines(self) -> list[str]:
        try:
            return (self._data_dir / "postmaster.pid").read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return []

    def _pid_from_file(self) -> int | None:
        lines = self._pid_file_lines()
        try:
            return int(lines[0]) if lines else None
        except ValueError:
            return None

    def _port_from_pid_file(self) -> int | None:
        lines = self._pid_file_lines()
        try:
            return int(lines[3]) if len(lines) > 3 else None
        except ValueError:
            return None

    def _postmaster_state(self, pid: int) -> Literal["ours", "dead", "foreign", "unknown"]:
        """Whether ``pid`` is this data dir's postmaster; pids get reused after a crash or reboot."""
        if pid <= 0 or not _pid_alive(pid):
            return "dead"
        if not Path("/proc/self").exists():
            return "ours"  # no procfs to look closer; pg_ctl makes the same assumption
        cwd = _proc_cwd(pid)  # the postmaster chdirs into its data dir
        exe = None
        with contextlib.suppress(OSError):
            exe = Path(os.readlink(f"/proc/{pid}/exe")).name
        if cwd is None or exe is None:
            return "unknown"  # alive but owned by a user we cannot inspect
        if exe.startswith("postgres") and cwd == self._data_dir.resolve():
            return "ours"
        return "foreign"

    def _orphan_pids(self) -> list[int]:
        """Live processes still sitting in our data dir, e.g. backends of a SIGKILLed postmaster."""
        proc = Path("/proc")
        if not proc.is_dir():
            return []
        data_dir = self._data_dir.resolve()
        orphans = []
        for entry in proc.iterdir():
            if entry.name.isdigit() and _proc_cwd(int(entry.name)) == data_dir and _pid_alive(int(entry.name)):
                orphans.append(int(entry.name))
        return orphans

    def _remove_stale_pid_file(self) -> None:
        pid = self._pid_from_file()
        pid_file = self._data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        state = "dead" if pid is None else self._postmaster_state(pid)
        if state == "ours":
            return
        if state == "unknown":
            # Deleting the lock file of a live server would let a second postmaster corrupt the data dir.
            raise EmbeddedPostgresError(
                f"{pid_file} names process {pid}, which this user cannot inspect. If it is not a PostgreSQL "
                f"server for {self._data_dir}, delete {pid_file} and start again."
            )
        # Leftover children keep the old shared memory attached, which makes the new postmaster refuse to
        # start; they exit on their own shortly after noticing the postmaster is gone.
        deadline = time.monotonic() + _ORPHAN_WAIT_S
        while (orphans := self._orphan_pids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if orphans:
            raise EmbeddedPostgresError(
                f"Processes {orphans} of a previous embedded PostgreSQL server still use {self._data_dir}. "
                f"Stop them (e.g. `kill {' '.join(map(str, orphans))}`) and start again."
            )
        pid_file.unlink(missing_ok=True)

    # -------------------------------------------------------------------------------------------- start

    def _start_server(self, config: _Config) -> _Config:
        self._remove_stale_pid_file()
        if not _port_is_free(config.port):
            config = self._move_to_new_port(config)
        try:
            self._pg_ctl_start(config.port)
        except _StartFailed as failed:
            # The port may have been grabbed between our check and the bind; one retry on a fresh port.
            if "Address already in use" not in failed.log_tail:
                raise self._start_error(failed) from None
            config = self._move_to_new_port(config)
            self._remove_stale_pid_file()
            try:
                self._pg_ctl_start(config.port)
            except _StartFailed as again:
                raise self._start_error(again) from None
        return config

    def _move_to_new_port(self, config: _Config) -> _Config:
        config = _Config(port=_free_port(), owner_password=config.owner_password)
        self._write_config(config)
        return config

    def _pg_ctl_start(self, port: int) -> None:
        result = self._run(
            [
                self._bin("pg_ctl"),
                "-D",
                str(self._data_dir),
                "-l",
                str(self._log_file),
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "start",
            ],
            timeout=_START_TIMEOUT_S + 30,
        )
        if result.returncode != 0:
            raise _StartFailed((result.stderr or result.stdout).strip(), self._log_tail())

    def _start_error(self, failed: _StartFailed) -> EmbeddedPostgresError:
        return EmbeddedPostgresError(
            f"The embedded PostgreSQL server in {self._data_dir} failed to start (pg_ctl: {failed.output}).\n"
            f"Last lines of {self._log_file}:\n{failed.log_tail}\n"
            "Fix the problem above and start again, or set PASAR_DATABASE_URL to an existing server."
        )

    def _log_tail(self) -> str:
        try:
            with self._log_file.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 16_384))
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])

    # --------------------------------------------------------------------------------------- connections

    def _url(self, config: _Config, database: str) -> str:
        return (
            f"postgresql://{self.OWNER}:{quote(config.owner_password, safe='')}@127.0.0.1:{config.port}/"
            f"{quote(database, safe='')}"
        )

    def _wait_until_connectable(self, config: _Config) -> None:
        # pg_ctl -w only watches postmaster.pid; a real login proves the port and the password work.
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self._url(config, "postgres"), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise EmbeddedPostgresError(
                        f"The embedded PostgreSQL server started but does not accept connections on "
                        f"127.0.0.1:{config.port} ({exc}).\n"
                        f"Last lines of {self._log_file}:\n{self._log_tail()}"
                    ) from exc
                time.sleep(0.2)

    @contextlib.contextmanager
    def _maintenance_connection(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        if not self.status().running:
            raise EmbeddedPostgresError(
                f"The embedded PostgreSQL server in {self._data_dir} is not running; start it first "
                "(EmbeddedCluster.start())."
            )
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        with psycopg.connect(self.owner_url("postgres"), autocommit=True, connect_timeout=10) as conn:
            yield conn
