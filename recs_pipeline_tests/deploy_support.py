"""Helpers for the deployment tests: a PostgreSQL-backed production instance and real processes.

The production `dagster.yaml` reads every connection setting from `DAGSTER_PG_*`; these helpers
create a throwaway PostgreSQL database for it, a `DAGSTER_HOME` holding a copy of that file, and
start/stop real processes (webserver, daemon, Celery workers) in their own process groups.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from recs_pipeline_tests.conftest import POSTGRES_HOST, admin_execute

REPO_ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_INSTANCE_YAML = REPO_ROOT / "deploy" / "production" / "dagster.yaml"
VENV_BIN = Path(sys.executable).parent


@contextmanager
def scratch_postgres_database(prefix: str) -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards; yields its name."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dagster_pg_env(db_name: str) -> dict[str, str]:
    """The `DAGSTER_PG_*` variables the production dagster.yaml reads, for the test server."""
    host, _, port = POSTGRES_HOST.partition(":")
    return {
        "DAGSTER_PG_HOST": host,
        "DAGSTER_PG_PORT": port or "5432",
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": db_name,
    }


def make_production_home(home: Path, extra_yaml: str = "") -> Path:
    """A DAGSTER_HOME holding the repo's production dagster.yaml (plus `extra_yaml`)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRODUCTION_INSTANCE_YAML, home / "dagster.yaml")
    if extra_yaml:
        with (home / "dagster.yaml").open("a") as fh:
            fh.write("\n" + extra_yaml)
    return home


def process_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """os.environ + overrides, with the venv's bin first on PATH (dagster, celery, ...)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def run_checked(args: Sequence[str], env: Mapping[str, str], timeout: float = 180) -> str:
    """Run a command to completion; raise with its output if it fails."""
    result = subprocess.run(
        list(args), env=dict(env), cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout + result.stderr


class ManagedProcess:
    """A long-running process in its own process group, output to a log file."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=dict(env), cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace_seconds: float = 20) -> int | None:
        """SIGINT to the whole group (what Ctrl-C does), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_seconds)
        # Children of the group (run workers, code servers) may outlive the leader.
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a truthy value; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
