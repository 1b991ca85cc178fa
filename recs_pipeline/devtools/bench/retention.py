"""Retention purge on PostgreSQL: batched purge vs one plain DELETE, with app-style load.

What it does (database `recs_bench_retention`, created and dropped on the local server):

1. Builds `activities` exactly as the contract states (`schema.activities`: PK + `created_at`
   index), filled server-side with `INSERT ... SELECT generate_series`: `--rows` rows of which
   `--expired` are older than the cutoff (ids and timestamps correlated, as an app's are). Then
   `VACUUM ANALYZE`, as a long-lived table would be.
2. Starts a load thread doing app-style single-row INSERTs (autocommit, `--rate` per second) and
   the same rate of point reads by id, recording each statement's latency.
3. Idle phase (`--idle-seconds`): the load alone, for the baseline latencies.
4. The pipeline's purge (`purge_expired_rows`, the code the Dagster op runs) with the load running:
   total seconds, every batch's duration, load latencies during the purge.
5. Rebuilds the same data and runs one plain `DELETE FROM activities WHERE created_at < :cutoff`
   with the same load (skip with `--skip-plain`).

Prints the figures and the targets (every batch <= 1 s, total <= 2x the plain DELETE, concurrent
insert p99 <= 50 ms). `--json` writes them to a file too.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from recs_pipeline.compute.retention import DEFAULT_BATCH_SIZE

DEFAULT_DATABASE = "recs_bench_retention"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
ACTIVITY_TYPES = (
    "login", "match_played", "tournament_registered", "tournament_completed", "team_joined",
    "team_left", "profile_updated",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=30_000_000, help="activity rows in total")
    parser.add_argument("--expired", type=int, default=10_000_000,
                        help="rows older than the cutoff (deleted by the purge)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="purge batch size")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="app inserts per second (and as many point reads) during the load")
    parser.add_argument("--idle-seconds", type=float, default=30.0,
                        help="length of the idle (load only) baseline phase")
    parser.add_argument("--retention-days", type=int, default=90)
    parser.add_argument("--server-url", default=DEFAULT_SERVER,
                        help="SQLAlchemy URL of any database on the PostgreSQL server; the bench "
                        "creates its own database next to it")
    parser.add_argument("--database", default=DEFAULT_DATABASE,
                        help="name of the bench database (dropped and recreated)")
    parser.add_argument("--skip-plain", action="store_true",
                        help="skip the plain single-DELETE comparison")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--json", dest="json_path", default=None,
                        help="also write the figures as JSON to this file")


# --- latency recording ----------------------------------------------------------------------


@dataclass
class Latencies:
    inserts: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    errors: int = 0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))  # nearest rank
    return ordered[index]


def _latency_summary(lat: Latencies) -> dict[str, Any]:
    return {
        "inserts": len(lat.inserts),
        "insert_p50_ms": round(_pct(lat.inserts, 50) * 1000, 2),
        "insert_p99_ms": round(_pct(lat.inserts, 99) * 1000, 2),
        "insert_max_ms": round(max(lat.inserts, default=float("nan")) * 1000, 2),
        "reads": len(lat.reads),
        "read_p50_ms": round(_pct(lat.reads, 50) * 1000, 2),
        "read_p99_ms": round(_pct(lat.reads, 99) * 1000, 2),
        "read_max_ms": round(max(lat.reads, default=float("nan")) * 1000, 2),
        "errors": lat.errors,
    }


class AppLoad:
    """A background thread acting like the app: single-row inserts and point reads by id."""

    def __init__(self, url: str, rate: float, first_new_id: int, max_id: int) -> None:
        self._url = url
        self._rate = rate
        self._next_id = first_new_id
        self._max_id = max_id
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._current = Latencies()
        self._thread = threading.Thread(target=self._run, name="app-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def phase(self) -> Latencies:
        """Return what was recorded since the last call and start a new recording."""
        with self._lock:
            done, self._current = self._current, Latencies()
        return done

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import random

        import psycopg

        rng = random.Random(7)
        conn = psycopg.connect(self._url, autocommit=True, options="-c timezone=UTC")
        interval = 1.0 / self._rate
        next_tick = time.perf_counter()
        try:
            while not self._stop.is_set():
                next_tick += interval
                new_id = self._next_id
                self._next_id += 1
                try:
                    t0 = time.perf_counter()
                    conn.execute(
                        "INSERT INTO activities (id, user_id, activity_type, object_type, "
                        "object_id, created_at, metadata) VALUES (%s, %s, %s, NULL, NULL, "
                        "now() AT TIME ZONE 'UTC', NULL)",
                        (new_id, rng.randrange(1, 1_000_000), rng.choice(ACTIVITY_TYPES)),
                    )
                    t1 = time.perf_counter()
                    conn.execute(
                        "SELECT id, user_id, activity_type, created_at FROM activities "
                        "WHERE id = %s",
                        (rng.randrange(1, self._max_id + 1),),
                    ).fetchall()
                    t2 = time.perf_counter()
                    with self._lock:
                        self._current.inserts.append(t1 - t0)
                        self._current.reads.append(t2 - t1)
                except Exception:
                    with self._lock:
                        self._current.errors += 1
                    conn.close()
                    conn = psycopg.connect(self._url, autocommit=True,
                                           options="-c timezone=UTC")
                delay = next_tick - time.perf_counter()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_tick = time.perf_counter()  # fell behind: do not burst to catch up
        finally:
            conn.close()


# --- data -----------------------------------------------------------------------------------


def _admin(server_url: str, sql: str) -> None:
    import sqlalchemy as sa

    from recs_pipeline.db import make_engine

    engine = make_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def build_activities(engine: Any, rows: int, expired: int, cutoff: datetime,
                     log: Any = print) -> float:
    """(Re)create `activities` as the contract states and fill it server-side; returns seconds."""
    import sqlalchemy as sa
    from sqlalchemy.schema import CreateIndex, CreateTable

    from recs_pipeline import schema

    started = time.perf_counter()
    span_expired = 275 * 86_400  # expired rows spread over the 275 days before the cutoff
    span_fresh = 90 * 86_400
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS activities"))
        conn.execute(CreateTable(schema.activities))  # PK only; the index is built after loading
    chunk = 2_000_000
    for lo in range(1, rows + 1, chunk):
        hi = min(rows, lo + chunk - 1)
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT setseed(:s)"), {"s": (lo % 997) / 997.0})
            # Expired: strictly before the cutoff; fresh: strictly after it. Within each class
            # the time follows the id with a little jitter, as an app's inserts do.
            conn.execute(
                sa.text(
                    "INSERT INTO activities (id, user_id, activity_type, object_type, object_id, "
                    "created_at, metadata) "
                    "SELECT g, 1 + (g * 7919) % 1000000, "
                    "(ARRAY['login','match_played','tournament_registered',"
                    "'tournament_completed','team_joined','team_left','profile_updated'])"
                    "[1 + g % 7], "
                    "CASE WHEN g % 3 = 0 THEN 'tournament' END, "
                    "CASE WHEN g % 3 = 0 THEN g % 50000 END, "
                    "CASE WHEN g <= :expired "
                    "THEN CAST(:cutoff AS timestamp) - make_interval(secs => "
                    "(:expired - g + 1)::float8 * :step_e - random() * :step_e * 0.5) "
                    "ELSE CAST(:cutoff AS timestamp) + make_interval(secs => "
                    "(g - :expired)::float8 * :step_f) END, "
                    "CASE WHEN g % 4 = 0 THEN '{\"source\": \"web\"}' END "
                    "FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) g"
                ),
                {
                    "lo": lo, "hi": hi, "expired": expired, "cutoff": cutoff,
                    "step_e": span_expired / max(expired, 1),
                    "step_f": span_fresh / max(rows - expired, 1),
                },
            )
        log(f"  loaded {hi:,}/{rows:,} rows ({time.perf_counter() - started:.0f} s)")
    with engine.begin() as conn:
        for index in schema.activities.indexes:
            conn.execute(CreateIndex(index))
    log(f"  index built ({time.perf_counter() - started:.0f} s)")
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        conn.execute(sa.text("VACUUM ANALYZE activities"))
    return time.perf_counter() - started


def _count_expired(engine: Any, cutoff: datetime) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return int(conn.execute(
            sa.text("SELECT count(*) FROM activities WHERE created_at < :c"), {"c": cutoff}
        ).scalar_one())


# --- phases ---------------------------------------------------------------------------------


def _run_with_load(url: str, args: argparse.Namespace, engine: Any, cutoff: datetime,
                   action: Any, label: str) -> dict[str, Any]:
    import sqlalchemy as sa

    with engine.connect() as conn:
        max_id = int(conn.execute(sa.text("SELECT max(id) FROM activities")).scalar_one())
    load = AppLoad(url, args.rate, first_new_id=max_id + 1, max_id=max_id)
    load.start()
    try:
        time.sleep(2)  # let the connection warm up
        load.phase()
        print(f"[{label}] idle load for {args.idle_seconds:.0f} s")
        time.sleep(args.idle_seconds)
        idle = load.phase()
        print(f"[{label}] running with load")
        started = time.perf_counter()
        detail = action()
        seconds = time.perf_counter() - started
        busy = load.phase()
    finally:
        load.stop()
    remaining = _count_expired(engine, cutoff)
    return {
        "seconds": round(seconds, 2),
        "remaining_expired_rows": remaining,
        "idle": _latency_summary(idle),
        "during": _latency_summary(busy),
        **detail,
    }


def run(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from recs_pipeline.cli import CliError
    from recs_pipeline.compute.retention import compute_cutoff
    from recs_pipeline.compute.timestamps import utc_now
    from recs_pipeline.db import make_engine, parse_database_url
    from recs_pipeline.defs.retention.job import purge_expired_rows

    if args.expired > args.rows or args.rows <= 0 or args.expired < 0:
        raise CliError(f"--expired ({args.expired}) must be within 0..--rows ({args.rows})")
    server = parse_database_url(args.server_url)
    if server.get_backend_name() != "postgresql":
        raise CliError("bench retention needs a PostgreSQL --server-url")
    url = server.set(database=args.database).render_as_string(hide_password=False)
    psycopg_url = server.set(database=args.database, drivername="postgresql").render_as_string(
        hide_password=False
    )
    _admin(args.server_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    _admin(args.server_url, f'CREATE DATABASE "{args.database}"')
    engine = make_engine(url)
    cutoff = compute_cutoff(utc_now(), args.retention_days)
    results: dict[str, Any] = {
        "rows": args.rows, "expired": args.expired, "batch_size": args.batch_size,
        "rate_per_s": args.rate, "cutoff": cutoff.isoformat(sep=" "),
    }
    try:
        print(f"building {args.rows:,} rows ({args.expired:,} expired) in {args.database}")
        results["build_seconds"] = round(build_activities(engine, args.rows, args.expired,
                                                          cutoff), 1)
        expired = _count_expired(engine, cutoff)
        if expired != args.expired:
            raise CliError(f"generated {expired} expired rows, expected {args.expired}")

        batch_times: list[float] = []

        def batched() -> dict[str, Any]:
            last = [time.perf_counter()]

            def on_batch(table: str, rows: int) -> None:
                now = time.perf_counter()
                batch_times.append(now - last[0])
                last[0] = now
                if len(batch_times) % 100 == 0:
                    print(f"  {len(batch_times)} batches, {sum(batch_times):.0f} s")

            stats = purge_expired_rows(engine, cutoff, batch_size=args.batch_size,
                                       on_batch=on_batch)
            return {
                "rows_deleted": stats.total_rows,
                "batches": stats.total_batches,
                "longest_batch_s": round(stats.longest_batch_seconds, 3),
                "batch_p50_s": round(_pct(batch_times, 50), 4),
                "batch_p99_s": round(_pct(batch_times, 99), 4),
                "rows_per_s": round(stats.rows_per_second),
            }

        results["batched"] = _run_with_load(psycopg_url, args, engine, cutoff, batched,
                                            "batched purge")
        print(json.dumps(results["batched"], indent=2))

        if not args.skip_plain:
            print("rebuilding the same data for the plain DELETE")
            build_activities(engine, args.rows, args.expired, cutoff)

            def plain() -> dict[str, Any]:
                with engine.begin() as conn:
                    deleted = conn.execute(
                        sa.text("DELETE FROM activities WHERE created_at < :c"), {"c": cutoff}
                    ).rowcount
                return {"rows_deleted": int(deleted)}

            results["plain"] = _run_with_load(psycopg_url, args, engine, cutoff, plain,
                                              "plain DELETE")
            print(json.dumps(results["plain"], indent=2))
    finally:
        engine.dispose()
        if not args.keep:
            _admin(args.server_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')

    batched_res = results["batched"]
    targets = {
        "every batch <= 1 s": batched_res["longest_batch_s"] <= 1.0,
        "insert p99 during purge <= 50 ms": batched_res["during"]["insert_p99_ms"] <= 50.0,
        "nothing expired left": batched_res["remaining_expired_rows"] == 0,
    }
    if "plain" in results:
        ratio = batched_res["seconds"] / max(results["plain"]["seconds"], 1e-9)
        results["batched_over_plain"] = round(ratio, 2)
        targets["total <= 2x plain DELETE"] = ratio <= 2.0
    results["targets"] = targets
    print("\ntargets:")
    for name, ok in targets.items():
        print(f"  {'PASS' if ok else 'MISS'}  {name}")
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0

