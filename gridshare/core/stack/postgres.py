"""The local PostgreSQL: its own initdb data dir under the state dir, loopback TCP only."""

from __future__ import annotations

import glob
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from gridshare.core.errors import StackError
from gridshare.core.settings import SERVICE_ROLES, Settings
from gridshare.core.stack.privileges import allow_traversal, service_user, share_path_with
from gridshare.core.stack.process import ManagedProcess, as_user, wait_until
from gridshare.core.stack.service import LocalService


class Postgres(LocalService):
    """Lifecycle of the local PostgreSQL server named by GRIDSHARE_DB_URL."""

    name = "postgres"
    setting = "GRIDSHARE_DB_URL"
    stop_timeout = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.state_path / "postgres"
        self.data = self.root / "data"
        self.process = ManagedProcess.in_state_dir(
            "postgres",
            settings.state_path,
            stop_signal=signal.SIGINT,  # "fast" shutdown: does not wait for clients
        )
        url = urlsplit(settings.db_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 5432
        self.role = url.username or "gridshare"
        self.database = url.path.lstrip("/") or "gridshare"

    def up(self) -> bool:
        """Start unless running; either way make sure the services' roles exist (a stack
        started by an older version has only some of them)."""
        started = super().up()
        if not started:
            self._create_roles()
        return started

    def start(self) -> None:
        user = service_user("postgres")
        self._initdb(user)
        if user:
            allow_traversal(self.root)
        self.process.start(
            [
                _binary("postgres", self.settings.pg_bin_dir),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                "unix_socket_directories=",
                *self._preload(),
            ],
            user=user,
        )
        wait_until(self.healthy, 60, "accepting connections", self.process)
        self._create_role_and_database()

    def _preload(self) -> list[str]:
        """TimescaleDB must be loaded at server start; it is, whenever it is installed and
        the schema may use it (without phoning home: the stack runs offline)."""
        if self.settings.db_flavor == "postgres":
            return []
        if not timescaledb_installed(self.settings.pg_bin_dir):
            return []
        return [
            "-c",
            "shared_preload_libraries=timescaledb",
            "-c",
            "timescaledb.telemetry_level=off",
        ]

    def _initdb(self, user: str | None) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.process.log_file.parent.mkdir(parents=True, exist_ok=True)
        if user:
            share_path_with(self.root, user)
            share_path_with(self.process.log_file.parent, user, tree=False)
        result = subprocess.run(
            [
                _binary("initdb", self.settings.pg_bin_dir),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            capture_output=True,
            text=True,
            check=False,
            **as_user(user),
        )
        if result.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise StackError(f"postgres: initdb failed: {result.stderr.strip()[-300:]}")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# gridshare local stack\n"
                "max_connections = 200\nshared_buffers = 256MB\n"
                "synchronous_commit = on\nfsync = on\n"
                "log_min_messages = warning\n"
            )

    def healthy(self) -> bool:
        try:
            with psycopg.connect(self._admin_url(), connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def _admin_url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _create_roles(self) -> None:
        """The owner role of GRIDSHARE_DB_URL and one role per service, which the migrations
        grant their rights to (docs/database.md, "Roles"). Loopback with trust: no passwords."""
        with psycopg.connect(self._admin_url(), autocommit=True) as conn:
            for role in (self.role, *sorted(set(SERVICE_ROLES.values()))):
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if not exists.fetchone():
                    conn.execute(f'CREATE ROLE "{role}" LOGIN')

    def _create_role_and_database(self) -> None:
        """The roles, and the database of GRIDSHARE_DB_URL owned by its role."""
        self._create_roles()
        with psycopg.connect(self._admin_url(), autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone():
                conn.execute(f'CREATE DATABASE "{self.database}" OWNER "{self.role}"')


def timescaledb_installed(bin_dir: str = "") -> bool:
    """Whether the server binaries in use have the TimescaleDB library beside them."""
    lib_dir = Path(_binary("postgres", bin_dir)).parents[1] / "lib"
    return (lib_dir / "timescaledb.so").exists()


def _binary(name: str, bin_dir: str = "") -> str:
    """From GRIDSHARE_PG_BIN_DIR when set; else the newest installed major version (Debian
    keeps server binaries outside PATH)."""
    if bin_dir:
        path = Path(bin_dir) / name
        if not path.exists():
            raise StackError(f"postgres: {path} not found; check GRIDSHARE_PG_BIN_DIR")
        return str(path)
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    found = candidates[-1] if candidates else shutil.which(name)
    if not found:
        raise StackError(f"postgres: `{name}` not found; run `make setup` to install postgresql")
    return found
