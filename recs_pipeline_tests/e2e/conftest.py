"""A real deployment for the end-to-end tests: webserver + daemon on a PostgreSQL instance.

One deployment per test module (starting processes is the expensive part): a PostgreSQL database
for the Dagster instance (the repo's production dagster.yaml, migrated with the CLI), another for
the app (seeded with `recs_pipeline.devtools.seed`, small), `dagster-webserver` and
`dagster-daemon run` against `workspace.yaml`, each in its own process group and stopped with
SIGINT (SIGKILL if it lingers). Logs go to the test's temp dir and are printed when a test fails.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from recs_pipeline.bootstrap import init_app_database
from recs_pipeline.db import make_engine
from recs_pipeline.devtools.seed import SeedConfig, seed_database
from recs_pipeline_tests.conftest import postgres_url
from recs_pipeline_tests.deploy_support import (
    ManagedProcess,
    dagster_pg_env,
    make_production_home,
    process_env,
    run_checked,
    scratch_postgres_database,
    wait_for,
)

LOCATION = "recs_pipeline"
REPOSITORY = "__repository__"
E2E_USERS = 150


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Deployment:
    """Handles on the running processes and databases of one end-to-end deployment."""

    tmp: Path
    env: dict[str, str]
    app_url: str
    port: int
    webserver: ManagedProcess | None = None
    daemon: ManagedProcess | None = None
    daemon_starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.base_url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # GraphQL validation errors come back as 400
            raise AssertionError(f"GraphQL HTTP {exc.code}: {exc.read().decode()[:2000]}") from None
        assert "errors" not in payload, payload["errors"]
        return payload["data"]

    def start_webserver(self) -> None:
        log = self.tmp / "webserver.log"
        self.logs.append(log)
        self.webserver = ManagedProcess(
            ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            self.env, log,
        )

    def start_daemon(self) -> None:
        self.daemon_starts += 1
        log = self.tmp / f"daemon-{self.daemon_starts}.log"
        self.logs.append(log)
        self.daemon = ManagedProcess(
            ["dagster-daemon", "run", "-w", "workspace.yaml"], self.env, log
        )

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    def wait_until_loaded(self, timeout: float = 180) -> None:
        def loaded() -> bool:
            assert self.webserver is not None and self.webserver.alive(), "webserver exited"
            try:
                data = self.graphql(
                    "{ workspaceOrError { ... on Workspace { "
                    "locationEntries { name loadStatus } } } }"
                )
            except OSError:
                return False
            entries = data["workspaceOrError"]["locationEntries"]
            return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

        wait_for(loaded, timeout, interval=1.0, what="the webserver and code location")

    def app_engine(self) -> sa.Engine:
        return make_engine(self.app_url)

    def dump_logs(self) -> str:
        out = []
        for log in self.logs:
            if log.exists():
                text = log.read_text(errors="replace")
                out.append(f"===== {log.name} (last 4000 chars) =====\n{text[-4000:]}")
        return "\n".join(out)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("e2e")
    with (
        scratch_postgres_database("recs_e2e_dagster") as dagster_db,
        scratch_postgres_database("recs_e2e_app") as app_db,
    ):
        app_url = postgres_url(app_db)
        engine = make_engine(app_url)
        try:
            init_app_database(engine)
            seed_database(engine, SeedConfig(users=E2E_USERS, seed=7), progress=False)
            with engine.begin() as conn:  # the daemon test inserts its own outbox events
                conn.execute(sa.text("DELETE FROM app_events"))
        finally:
            engine.dispose()
        home = make_production_home(tmp / "dagster_home")
        # Test cadence for run monitoring (production: 300 s start timeout, 30 s poll), so runs
        # orphaned by the daemon restart are failed and re-requested within the test's budget.
        instance_yaml = home / "dagster.yaml"
        text = instance_yaml.read_text()
        for prod, fast in (("start_timeout_seconds: 300", "start_timeout_seconds: 20"),
                           ("poll_interval_seconds: 30", "poll_interval_seconds: 3")):
            assert prod in text, prod
            text = text.replace(prod, fast)
        instance_yaml.write_text(text)
        env = process_env({
            **dagster_pg_env(dagster_db),
            "DAGSTER_HOME": str(home),
            "RECS_DATABASE_URL": app_url,
            "RECS_SCHEDULE_TIMEZONE": "UTC",
            # Sensor cadence for the test; production keeps the default (docs/achievements.md).
            "RECS_ACHIEVEMENTS_MINIMUM_INTERVAL_SECONDS": "3",
            "RECS_ACHIEVEMENTS_BATCH_SIZE": "3",  # several runs, so the restart lands mid-way
            "RECS_ACHIEVEMENTS_MAX_RUN_SECONDS": "30",  # orphaned runs fail fast (see above)
            # Dagster's freshness daemon re-evaluates the policies every 30 s by default.
            "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
        })
        run_checked(["dagster", "instance", "migrate"], env)
        dep = Deployment(tmp=tmp, env=env, app_url=app_url, port=free_port())
        try:
            dep.start_webserver()
            dep.start_daemon()
            dep.wait_until_loaded()
            yield dep
        finally:
            dep.stop_daemon()
            if dep.webserver is not None:
                dep.webserver.stop()
            time.sleep(0.5)  # let run workers' connections close before the databases drop


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On failure, attach the processes' logs to the report."""
    report = yield
    if report.failed and "deployment" in getattr(item, "funcargs", {}):
        report.sections.append(("deployment logs", item.funcargs["deployment"].dump_logs()))
    return report
