"""A throwaway PostgreSQL cluster for the tests: the distribution's server binaries (``apt-get install postgresql``),
``initdb`` into a temporary directory, one server on 127.0.0.1 at a free port, stopped and deleted afterwards.

PostgreSQL refuses to run as root; when the tests run as root (CI containers), the cluster runs as the ``postgres``
user the Debian package creates.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .conftest import free_port


def _bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[4]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql (.ci/run does this)")


@dataclass
class Cluster:
    bindir: Path
    datadir: Path
    port: int
    user: str | None  # the OS user the server runs as (None: ourselves)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, timeout=60)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.datadir / "server.log"), "-w", "-t", "30",
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop", check=False)

    def create_database(self, name: str) -> str:
        """A fresh database in this cluster; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # the name is ours (the tests'), never input
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    bindir = _bindir()
    user = None
    root = Path(tempfile.mkdtemp(prefix="ketamine-cds-pg-"))
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    datadir = root / "data"
    cluster = Cluster(bindir, datadir, free_port(), user)
    try:
        cluster._run("initdb", "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                     "--no-sync", "--locale=C")
        cluster.start()
        deadline = time.monotonic() + 30
        while cluster._run("pg_isready", "-h", "127.0.0.1", "-p", str(cluster.port), check=False).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start: " + (datadir / "server.log").read_text()[-2000:])
            time.sleep(0.1)
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
