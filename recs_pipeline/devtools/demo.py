"""`recs-pipeline demo`: run every job once against the configured app database and summarise.

Runs go through the Dagster instance in `$DAGSTER_HOME` (the embedded default in the demo), so they
show up in the UI that `make demo` starts afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class DemoRun:
    job_name: str
    run_config: dict[str, Any] = field(default_factory=dict)


# In the order a fresh demo database wants them. Later features append here.
DEMO_RUNS: list[DemoRun] = [
    # Drain the seeded app_events backlog once (the sensor does this in batches when running).
    DemoRun("achievements_job", {"ops": {"load_events": {"config": {
        "all_pending": True, "max_events": 500_000}}}}),
    DemoRun("nightly_recommendations_job"),
    DemoRun("refresh_user_recommendations_job",
            {"ops": {"refresh_user_recommendations": {"config": {"user_id": 1}}}}),
    # Last: by now the achievements run has processed events, so old ones can be purged too.
    DemoRun("retention_purge_job"),
]


# The terminal gets a short summary; every event and log line still lands in the instance, where
# the UI shows it (the console logger at its default level prints hundreds of DEBUG lines).
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo(console: Console | None = None) -> bool:
    """Execute each demo job in process on the `$DAGSTER_HOME` instance; True if all succeed.

    Prints one line per job as it finishes and a table at the end; warnings and errors of the
    runs still reach the terminal."""
    from recs_pipeline.definitions import defs

    console = console or Console()
    table = Table(title="recs_pipeline demo runs")
    table.add_column("job")
    table.add_column("status")
    table.add_column("run id")
    table.add_column("seconds", justify="right")
    all_ok = True
    with dg.DagsterInstance.get() as instance:
        for demo_run in DEMO_RUNS:
            job = defs.resolve_job_def(demo_run.job_name)
            with console.status(f"running {demo_run.job_name}"):
                result = job.execute_in_process(
                    run_config={**demo_run.run_config, **QUIET_CONSOLE}, instance=instance,
                    raise_on_error=False,
                )
            stats = instance.get_run_stats(result.run_id)
            seconds = (stats.end_time or 0) - (stats.start_time or 0)
            status = "[green]SUCCESS" if result.success else "[red]FAILURE"
            all_ok = all_ok and result.success
            console.print(f"{demo_run.job_name}: {status}[/] in {seconds:.1f} s "
                          f"(run {result.run_id[:8]})")
            table.add_row(demo_run.job_name, status, result.run_id[:8], f"{seconds:.1f}")
    console.print(table)
    return all_ok
