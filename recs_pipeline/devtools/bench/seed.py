"""Seed speed: `init-db` + `seed` into a fresh database per size; rows/s per table, peak RSS.

For each size (ascending) a child process creates a fresh database (PostgreSQL: database
`recs_bench_seed`, dropped and recreated next to `--server-url`; SQLite: a temporary file), runs
`init_app_database` and `seed_database` exactly as `recs-pipeline init-db` / `seed` do, and reports
rows, seconds and rows/s per table, the total, and its own peak RSS (one process per size, so the
peaks do not mask each other).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "recs_bench_seed"


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 10000,100000: {text!r}") from None
    if not sizes or any(size <= 0 for size in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive integers, got {text!r}")
    return sorted(sizes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=_sizes, default=[10_000, 100_000, 1_000_000],
                        help="comma-separated user counts (default 10000,100000,1000000)")
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--server-url", default=DEFAULT_SERVER,
                        help="SQLAlchemy URL of any database on the PostgreSQL server; the bench "
                        "creates its own database next to it")
    parser.add_argument("--database", default=DEFAULT_DATABASE,
                        help="PostgreSQL bench database name (dropped and recreated per size)")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    parser.add_argument("--now", default="2025-06-01", help="anchor date (ISO), fixed for "
                        "comparable runs")
    parser.add_argument("--keep", action="store_true", help="keep the last bench database")
    parser.add_argument("--json", dest="json_path", default=None,
                        help="also write the figures as JSON to this file")


def _recreate_postgres(server_url: str, database: str) -> str:
    import sqlalchemy as sa

    from recs_pipeline.db import make_engine, parse_database_url

    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    finally:
        admin.dispose()
    url = parse_database_url(server_url).set(database=database)
    return url.render_as_string(hide_password=False)


def _drop_postgres(server_url: str, database: str) -> None:
    import sqlalchemy as sa

    from recs_pipeline.db import make_engine

    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _one_size(users: int, args: dict[str, Any], out: Any) -> None:
    """Child process: fresh database, init + seed, figures back through the pipe."""
    try:
        from recs_pipeline.bootstrap import init_app_database
        from recs_pipeline.db import make_engine
        from recs_pipeline.devtools.seed import SeedConfig, seed_database

        t0 = time.perf_counter()
        tmp: tempfile.TemporaryDirectory[str] | None = None
        if args["backend"] == "postgresql":
            url = _recreate_postgres(args["server_url"], args["database"])
        else:
            tmp = tempfile.TemporaryDirectory(prefix="recs_bench_seed_")
            url = f"sqlite:///{Path(tmp.name) / 'app.db'}"
        engine = make_engine(url)
        t_init = time.perf_counter()
        init_app_database(engine)
        init_seconds = time.perf_counter() - t_init
        summary = seed_database(
            engine,
            SeedConfig(users=users, seed=args["seed"], now=datetime.fromisoformat(args["now"])),
            progress=False,
        )
        engine.dispose()
        total = time.perf_counter() - t0
        if tmp is not None:
            tmp.cleanup()
        out.send({
            "users": users,
            "backend": args["backend"],
            "rows": summary.rows,
            "table_seconds": summary.table_seconds,
            "seed_seconds": summary.seconds,
            "init_seconds": init_seconds,
            "total_seconds": total,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        })
    except BaseException as exc:  # reported by the parent as one line
        out.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        out.close()


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"seed {result['users']:,} users on {result['backend']}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("rows/s", justify="right")
    for name, rows in result["rows"].items():
        secs = result["table_seconds"][name]
        rate = f"{rows / secs:,.0f}" if secs > 0 else "-"
        table.add_row(name, f"{rows:,}", f"{secs:.2f}", rate)
    all_rows = sum(result["rows"].values())
    table.add_row("[b]all (seed)", f"{all_rows:,}", f"{result['seed_seconds']:.2f}",
                  f"{all_rows / result['seed_seconds']:,.0f}")
    console = Console()
    console.print(table)
    console.print(
        f"users={result['users']:,} backend={result['backend']} "
        f"seed={result['seed_seconds']:.1f}s init-db={result['init_seconds']:.1f}s "
        f"end-to-end (create db + init + seed)={result['total_seconds']:.1f}s "
        f"peak RSS={result['peak_rss_mb']:,.0f} MiB"
    )


def run(args: argparse.Namespace) -> int:
    from recs_pipeline.cli import CliError

    try:
        datetime.fromisoformat(args.now)
    except ValueError:
        raise CliError(f"--now: expected an ISO date, got {args.now!r}") from None
    if args.backend == "postgresql":
        # Fail fast (one line, exit 2) when the server is unreachable.
        from recs_pipeline.db import make_engine

        make_engine(args.server_url).dispose()
    params = {"backend": args.backend, "server_url": args.server_url,
              "database": args.database, "seed": args.seed, "now": args.now}
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    results: list[dict[str, Any]] = []
    try:
        for users in args.sizes:
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_one_size, args=(users, params, child))
            proc.start()
            child.close()
            try:
                result = parent.recv()
            except EOFError:
                result = {"error": "the worker process died without a result"}
            proc.join()
            if "error" in result:
                raise CliError(f"seeding {users:,} users failed: {result['error']}")
            _print(result)
            results.append(result)
    finally:
        if args.backend == "postgresql" and not args.keep:
            _drop_postgres(args.server_url, args.database)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0
