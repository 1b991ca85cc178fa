"""Running a job as the daemon would: a fresh `dagster job execute` process per run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


class JobRun:
    """One `dagster job execute` process, its output collected by a thread."""

    def __init__(self, job: str, env: dict[str, str], config: Path | None,
                 prefix: list[str] | None = None) -> None:
        """`prefix`: a wrapper command, e.g. `/usr/bin/time -f ...` for the peak RSS."""
        cmd = [*(prefix or []), str(Path(sys.executable).parent / "dagster"), "job", "execute",
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

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
