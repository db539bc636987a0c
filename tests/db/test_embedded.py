"""The embedded cluster against the machine's real PostgreSQL server binaries.

Tests that stop, crash or corrupt a cluster get their own home; the rest share one running cluster.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pasar.db import embedded
from pasar.db.embedded import EmbeddedCluster, EmbeddedPostgresError, find_bin_dir


def _bin_dir_or_none() -> Path | None:
    try:
        return find_bin_dir()
    except EmbeddedPostgresError:
        return None


BIN_DIR = _bin_dir_or_none()
needs_pg = pytest.mark.skipif(BIN_DIR is None, reason="PostgreSQL server binaries not installed")


def _let_server_user_through(path: Path) -> None:
    """pytest's tmp dirs are 0700 root; as root the server runs as `postgres` and must pass through them."""
    if os.geteuid() != 0:
        return
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH and directory.stat().st_uid == 0:
            directory.chmod(stat.S_IMODE(mode) | 0o011)


def _is_dead(pid: int) -> bool:
    """Gone or a zombie: a SIGKILLed postmaster is re-parented to init, which may never reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    assert _is_dead(child.pid)
    return child.pid


def _server_reachable_dir() -> Iterator[Path]:
    """A fresh directory under /tmp that the server user can reach. Not pytest's tmp_path: another pytest
    session may reset its base to 0700 at any moment, locking the server user out mid-test."""
    base = Path(tempfile.mkdtemp(prefix="pasar-embedded-"))
    _let_server_user_through(base)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def home() -> Iterator[Path]:
    yield from (base / "home" for base in _server_reachable_dir())


@pytest.fixture
def cluster(home: Path) -> Iterator[EmbeddedCluster]:
    """A cluster of its own for tests that stop or break it; never left running."""
    cluster = EmbeddedCluster(home)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def shared() -> Iterator[EmbeddedCluster]:
    if BIN_DIR is None:
        pytest.skip("PostgreSQL server binaries not installed")
    for base in _server_reachable_dir():
        cluster = EmbeddedCluster(base / "home")
        cluster.start()
        yield cluster
        cluster.stop()


# --------------------------------------------------------------------------------------- shared cluster


def test_start_is_idempotent(shared: EmbeddedCluster) -> None:
    first = shared.start()
    second = shared.start()
    assert first.running
    assert first.initialized
    assert (second.port, second.pid) == (first.port, first.pid)
    assert shared.status() == second
    assert second.data_dir == shared.data_dir
    assert shared.data_dir.name == "data"
    assert shared.data_dir.parent.name == "pg"


def test_owner_url_connects(shared: EmbeddedCluster) -> None:
    status = shared.status()
    url = shared.owner_url()
    assert url.startswith(f"postgresql://{EmbeddedCluster.OWNER}:")
    assert url.endswith(f"@127.0.0.1:{status.port}/postgres")
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("select current_user").fetchone() == (EmbeddedCluster.OWNER,)


def test_server_settings(shared: EmbeddedCluster) -> None:
    with psycopg.connect(shared.owner_url()) as conn:
        settings = {
            name: conn.execute(f"show {name}").fetchone()  # names are literals of this test
            for name in ("listen_addresses", "unix_socket_directories", "max_connections", "fsync")
        }
        encoding = conn.execute("select pg_encoding_to_char(encoding) from pg_database where datname = 'postgres'")
        assert encoding.fetchone() == ("UTF8",)
    assert settings == {
        "listen_addresses": ("127.0.0.1",),
        "unix_socket_directories": ("",),
        "max_connections": ("200",),
        "fsync": ("on",),
    }


def test_password_is_required(shared: EmbeddedCluster) -> None:
    port = shared.status().port
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"postgresql://{EmbeddedCluster.OWNER}:wrong@127.0.0.1:{port}/postgres").close()


def test_ensure_and_drop_database(shared: EmbeddedCluster) -> None:
    name = "Pasar-Test db"  # needs quoting: proves identifiers are escaped, not pasted
    shared.ensure_database(name)
    shared.ensure_database(name)
    with psycopg.connect(shared.owner_url(name), autocommit=True) as conn:
        assert conn.execute("select current_database()").fetchone() == (name,)
        count = conn.execute("select count(*) from pg_database where datname = %s", (name,)).fetchone()
        assert count == (1,)
        shared.drop_database(name)  # WITH (FORCE) ends this open session
    shared.drop_database(name)
    with psycopg.connect(shared.owner_url()) as conn:
        assert conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is None


def test_layout_and_permissions(shared: EmbeddedCluster) -> None:
    pg = shared.data_dir.parent
    config_file = pg / "cluster.json"
    config = json.loads(config_file.read_text())
    assert set(config) == {"port", "owner_password"}
    assert config["port"] == shared.status().port
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert config_file.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(pg.stat().st_mode) == 0o755
    assert stat.S_IMODE(shared.data_dir.stat().st_mode) == 0o700
    assert (pg / "log" / "server.log").is_file()
    if os.geteuid() == 0:
        assert shared.data_dir.stat().st_uid == pwd.getpwnam("postgres").pw_uid
    leftovers = [p.name for p in pg.iterdir() if p.name.startswith((".pwfile", ".cluster", "data."))]
    assert leftovers == []


# ------------------------------------------------------------------------------------- own clusters


@needs_pg
def test_stop_is_idempotent(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    assert cluster.start().running
    stopped = cluster.stop()
    assert not stopped.running
    assert stopped.pid is None
    assert stopped.initialized
    assert cluster.stop() == stopped
    assert cluster.status() == stopped
    with pytest.raises(EmbeddedPostgresError, match="not running"):
        cluster.ensure_database("anything")

    never = EmbeddedCluster(tmp_path / "never", bin_dir=tmp_path / "no-binaries-needed")
    assert never.stop() == never.status()
    assert not never.status().initialized
    assert not never.status().running


@needs_pg
@pytest.mark.parametrize("owner", ["dead", "foreign"])
def test_stale_pid_file(cluster: EmbeddedCluster, owner: str) -> None:
    cluster.start()
    cluster.stop()
    # A crash or reboot leaves the pid file behind; its pid is gone or now belongs to something else.
    pid = _dead_pid() if owner == "dead" else os.getpid()
    (cluster.data_dir / "postmaster.pid").write_text(f"{pid}\n{cluster.data_dir}\n0\n5432\n\n127.0.0.1\n")
    assert not cluster.status().running
    started = cluster.start()
    assert started.running
    assert started.pid not in (None, pid)
    with psycopg.connect(cluster.owner_url()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


@needs_pg
def test_crash_recovery_keeps_committed_rows(cluster: EmbeddedCluster) -> None:
    pid = cluster.start().pid
    assert pid is not None
    with psycopg.connect(cluster.owner_url()) as conn:
        conn.execute("create table survivor (note text)")
        conn.execute("insert into survivor values ('committed before the crash')")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _is_dead(pid):
        assert time.monotonic() < deadline, "postmaster did not die"
        time.sleep(0.05)
    assert not cluster.status().running

    recovered = cluster.start()
    assert recovered.running
    assert recovered.pid != pid
    with psycopg.connect(cluster.owner_url()) as conn:
        assert conn.execute("select note from survivor").fetchall() == [("committed before the crash",)]


@needs_pg
def test_taken_port_moves_the_cluster(cluster: EmbeddedCluster) -> None:
    old_port = cluster.start().port
    assert old_port is not None
    cluster.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the old listener may linger in TIME_WAIT
        try:
            squatter.bind(("127.0.0.1", old_port))
            squatter.listen()
        except OSError:
            pass  # another process took the port already: it is taken either way
        moved = cluster.start()
    assert moved.running
    assert moved.port not in (None, old_port)
    config = json.loads((cluster.data_dir.parent / "cluster.json").read_text())
    assert config["port"] == moved.port
    with psycopg.connect(cluster.owner_url()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


@needs_pg
def test_failed_initdb_leaves_nothing_behind(cluster: EmbeddedCluster) -> None:
    assert BIN_DIR is not None
    fake_bin = cluster.data_dir.parents[2] / "fake-bin"  # where the server user can reach it
    fake_bin.mkdir()
    fake_bin.chmod(0o755)
    for name in ("pg_ctl", "postgres"):
        (fake_bin / name).symlink_to(BIN_DIR / name)
    initdb = fake_bin / "initdb"
    # Writes part of a cluster, then fails: a retry must not trip over the remains.
    initdb.write_text('#!/bin/sh\necho 15 > "$2/PG_VERSION"\necho "initdb: simulated failure" >&2\nexit 1\n')
    initdb.chmod(0o755)

    with pytest.raises(EmbeddedPostgresError, match="simulated failure"):
        EmbeddedCluster(cluster.data_dir.parent.parent, bin_dir=fake_bin).start()
    pg = cluster.data_dir.parent
    assert not cluster.data_dir.exists()
    assert [p.name for p in pg.iterdir() if p.name not in (".lock", "log")] == []
    assert not cluster.status().initialized

    assert cluster.start().running


def test_missing_binaries_in_bin_dir(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbeddedPostgresError) as excinfo:
        EmbeddedCluster(tmp_path, bin_dir=tmp_path / "empty").start()
    message = str(excinfo.value)
    assert "apt-get install postgresql" in message
    assert "PASAR_DATABASE_URL" in message
    assert str(tmp_path / "empty") in message
    assert not (tmp_path / "pg").exists()


def test_discovery_finds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *_args, **_kwargs: None)
    monkeypatch.setattr(embedded, "_DEBIAN_PG_LIB", tmp_path / "no-such-dir")
    with pytest.raises(EmbeddedPostgresError) as excinfo:
        EmbeddedCluster(tmp_path).start()
    message = str(excinfo.value)
    assert "were not found" in message
    assert "apt-get install postgresql" in message
    assert "PASAR_PG_BIN_DIR" in message
    assert "PASAR_DATABASE_URL" in message


@needs_pg
def test_discovery_finds_server_binaries() -> None:
    bin_dir = find_bin_dir()
    assert all((bin_dir / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


@needs_pg
@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to the postgres user")
def test_unreachable_home_is_explained(tmp_path: Path) -> None:
    _let_server_user_through(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(EmbeddedPostgresError, match=r"cannot enter .*locked") as excinfo:
        EmbeddedCluster(locked / "home").start()
    assert "chmod o+x" in str(excinfo.value)


@needs_pg
@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs the postgres user")
def test_root_without_postgres_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_user(name: str) -> object:
        raise KeyError(name)

    monkeypatch.setattr(pwd, "getpwnam", no_such_user)
    with pytest.raises(EmbeddedPostgresError, match="non-root user") as excinfo:
        EmbeddedCluster(tmp_path / "home").start()
    assert "PASAR_DATABASE_URL" in str(excinfo.value)
