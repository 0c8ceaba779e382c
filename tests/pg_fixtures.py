"""PostgreSQL for tests: a database of its own on the machine's server, and a private cluster.

Use from any test module::

    from tests.pg_fixtures import pg_url, pg_cluster  # noqa: F401 (fixtures)

    def test_x(pg_url):           # "postgresql://postgres@127.0.0.1:5432/sg_test_<random>"
        ...

    def test_y(pg_cluster):       # PgCluster: .url, .stop() (a crash: -m immediate), .start()
        ...

``pg_url``: the server at ``SG_PG_HOST``:``SG_PG_PORT`` (default 127.0.0.1:5432, user
postgres, trust auth) gets a new database per test, dropped afterwards. ``pg_cluster``: a
cluster made with initdb in a temporary folder on a free port, which a test may stop and
start (an outage); it runs as the ``postgres`` user when the tests run as root (initdb
refuses root). Both skip, saying why, when the server or the binaries are not there.
"""

from __future__ import annotations

import asyncio
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.redis_fixtures import free_port

HOST = os.environ.get("SG_PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("SG_PG_PORT", "5432"))
ADMIN_URL = f"postgresql://postgres@{HOST}:{PORT}/postgres"


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _asyncpg() -> object:
    try:
        import asyncpg
    except ImportError:
        pytest.skip("asyncpg is not installed (pip install 'sipguard[postgres]')")
    return asyncpg


async def _admin(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=3)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def create_database(admin_url: str = ADMIN_URL) -> str:
    """A new empty database on the server of ``admin_url``: its URL."""
    name = f"sg_test_{secrets.token_hex(5)}"
    asyncio.run(_admin(admin_url, f"CREATE DATABASE {name}"))
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str, admin_url: str = ADMIN_URL) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture()
def pg_url() -> Iterator[str]:
    _asyncpg()
    try:
        url = create_database()
    except Exception as exc:    # refused, timed out, or a password asked for: no server for tests
        pytest.skip(f"no PostgreSQL at {HOST}:{PORT} lets user postgres create a database "
                    f"({type(exc).__name__}: {exc}); set SG_PG_HOST/SG_PG_PORT")
    try:
        yield url
    finally:
        drop_database(url)


@dataclass
class PgCluster:
    bin_dir: str
    folder: str
    port: int
    user: str | None             # run the server as this user (None: as ourselves)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        subprocess.run([*prefix, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)

    def init(self) -> None:
        self._run(f"{self.bin_dir}/initdb", "-D", f"{self.folder}/data", "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        self._run(f"{self.bin_dir}/pg_ctl", "-D", f"{self.folder}/data", "-l", f"{self.folder}/log", "-w",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: the server stops as if it crashed (recovery at the next start)."""
        self._run(f"{self.bin_dir}/pg_ctl", "-D", f"{self.folder}/data", "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return os.path.exists(f"{self.folder}/data/postmaster.pid")


@pytest.fixture()
def pg_cluster() -> Iterator[PgCluster]:
    _asyncpg()
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    user = None
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser is missing: initdb refuses root")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run initdb as")
        user = "postgres"
    folder = tempfile.mkdtemp(prefix="sg-pg-")
    os.chmod(folder, 0o755)
    if user:
        shutil.chown(folder, user)
    cluster = PgCluster(bin_dir, folder, free_port(), user)
    cluster.init()
    cluster.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            asyncio.run(_admin(cluster.admin_url, "SELECT 1"))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield cluster
    finally:
        if cluster.running():
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
