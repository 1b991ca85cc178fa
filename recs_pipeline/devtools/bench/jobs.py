"""Running a job as the daemon would: a fresh `dagster job execute` process per run."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GNU_TIME = "/usr/bin/time"
PRODUCTION_DAGSTER_YAML = Path(__file__).resolve().parents[3] / "deploy/production/dagster.yaml"


class JobRun:
    """One `dagster job execute` process, its output collected by a thread."""

    def __init__(self, job: str, env: dict[str, str], config: Path | None,
                 measure_rss: bool = False) -> None:
        """`measure_rss`: run under GNU time (when installed) for `peak_rss_gb`."""
        prefix = [GNU_TIME, "-f", "peak_rss_kb=%M"] if measure_rss and Path(
            GNU_TIME).exists() else []
        cmd = [*prefix, str(Path(sys.executable).parent / "dagster"), "job", "execute",
               "-m", "recs_pipeline.definitions", "-j", job]
        if config is not None:
            cmd += ["-c", str(config)]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def wait(self, timeout: float = 900) -> tuple[int, float, int]:
        """Exit code, seconds since the process started, and step retries."""
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        retries = sum("STEP_UP_FOR_RETRY" in line for line in self.lines)
        return rc, time.monotonic() - self.started, retries

    @property
    def peak_rss_gb(self) -> float | None:
        """The process's peak RSS (GNU time's report), None when it was not measured."""
        kb = next((int(m.group(1)) for line in self.lines
                   if (m := re.match(r"peak_rss_kb=(\d+)", line))), None)
        return kb / 1024 / 1024 if kb is not None else None

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def postgres_instance_env(home: str, server_url: str, instance_db: str, app_url: str
                          ) -> dict[str, str]:
    """A DAGSTER_HOME with the production dagster.yaml on the PostgreSQL database `instance_db`
    (migrated with the CLI), and the environment a `dagster job execute` needs for it."""
    from recs_pipeline.db import parse_database_url

    server = parse_database_url(server_url)
    shutil.copy(PRODUCTION_DAGSTER_YAML, Path(home) / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": home, "RECS_DATABASE_URL": app_url,
           "DAGSTER_PG_HOST": server.host or "127.0.0.1",
           "DAGSTER_PG_PORT": str(server.port or 5432),
           "DAGSTER_PG_USER": server.username or "postgres",
           "DAGSTER_PG_PASSWORD": server.password or "", "DAGSTER_PG_DB": instance_db}
    subprocess.run([str(Path(sys.executable).parent / "dagster"), "instance", "migrate"],
                   env=env, check=True, capture_output=True)
    return env


def step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    """Seconds from each step's start to its success or failure, from the run's event log."""
    import dagster as dg

    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS,
                                  dg.DagsterEventType.STEP_FAILURE):
            seconds[event.step_key] = entry.timestamp - started.get(event.step_key,
                                                                   entry.timestamp)
    return seconds
