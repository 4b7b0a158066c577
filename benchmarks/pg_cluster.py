"""A throwaway PostgreSQL cluster in a temporary folder, for the tests (conftest ``postgres``) and the benchmarks.

    >>> cluster = PostgresCluster(postgres_bin())     # initdb + start on 127.0.0.1 and a free port, trust auth
    >>> cluster.admin("CREATE DATABASE petseg")
    >>> cluster.url("petseg")
    'postgresql://postgres@127.0.0.1:40123/petseg'
    >>> cluster.stop("fast"); cluster.start()         # what a server restart looks like to the app
    >>> cluster.remove()

Uses Debian's server binaries (``/usr/lib/postgresql/<version>/bin``, package ``postgresql``). initdb refuses to
run as root, so as root the cluster runs as the ``postgres`` system user.
"""

from __future__ import annotations

import os
from pathlib import Path


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresCluster:
    """A throwaway PostgreSQL cluster in a temporary folder, on 127.0.0.1 and a free port (trust auth)."""

    def __init__(self, bindir: Path, *, fsync: bool = True) -> None:
        import getpass
        import shutil
        import subprocess
        import tempfile

        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="petseg-pg-"))
        self.port = free_port()
        # initdb refuses root: run the server as the postgres system user, who then owns the folder.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.user = "postgres" if os.geteuid() == 0 else getpass.getuser()
        if self.prefix:
            shutil.chown(self.folder, "postgres", "postgres")
        data = str(self.folder)
        self._run = lambda *args: subprocess.run([*self.prefix, *args], check=True, capture_output=True, text=True)
        self._run(str(bindir / "initdb"), "-D", data, "-A", "trust", "-U", self.user, "--no-sync")
        # Tests turn fsync off (speed; they kill processes, not the machine); benchmarks keep it on.
        self.options = (f"-p {self.port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200"
                        + ("" if fsync else " -c fsync=off"))
        self.start()

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.folder), "-o", self.options, "-w", "-l",
                  str(self.folder / "server.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.folder), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m fast``: sessions are ended, in-flight transactions rolled back, the server comes back."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.folder), "-o", self.options, "-m", mode, "-w", "-l",
                  str(self.folder / "server.log"), "restart")

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def remove(self) -> None:
        import shutil
        import subprocess

        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.folder), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
