"""`recs-pipeline`: the command-line entry point (demo/test set-up, benchmarks, operations).

Every command takes `--database-url` (default: `$RECS_DATABASE_URL`, else the embedded SQLite demo
database). Bad input ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from recs_pipeline.db import DatabaseConfigError, default_database_url, make_engine, redact_url
from recs_pipeline.devtools.bench import BENCH_TOPICS
from recs_pipeline.resources import DATABASE_URL_ENV_VAR

EXIT_USAGE = 2
# `seed` builds every row in memory before writing them in one transaction: about 1.6 GiB per
# million users (docs/performance.md), so 16 GiB at the 10M users the pipeline is sized for.
MAX_SEED_USERS = 10_000_000


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _seed_user_count(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_SEED_USERS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_SEED_USERS:,} users (seeding holds every row in memory, "
            f"about 1.6 GiB per million users), got {value:,}")
    return value


def _iso_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date or date-time (e.g. 2025-06-01), got {text!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _database_url(args: argparse.Namespace) -> str:
    """--database-url, else $RECS_DATABASE_URL, else the demo's SQLite file (a developer tool:
    the code location itself has no such default)."""
    return args.database_url or os.environ.get(DATABASE_URL_ENV_VAR) or default_database_url()


def cmd_init_db(args: argparse.Namespace) -> int:
    from recs_pipeline.bootstrap import init_app_database

    engine = make_engine(_database_url(args))
    try:
        added = init_app_database(engine)
    finally:
        engine.dispose()
    print(f"app tables ready on {redact_url(_database_url(args))}; "
          f"{added} achievements added to the catalogue")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from recs_pipeline.devtools.seed import SeedConfig, seed_database

    engine = make_engine(_database_url(args))
    try:
        summary = seed_database(
            engine,
            SeedConfig(users=args.users, seed=args.seed, now=args.now),
            progress=not args.no_progress,
            replace=args.replace,
        )
    except MemoryError:  # below MAX_SEED_USERS on a smaller machine; the transaction rolled back
        raise CliError(f"not enough memory to seed {args.users:,} users (about 1.6 GiB per "
                       "million users); nothing was written") from None
    finally:
        engine.dispose()
    print(summary.render())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from recs_pipeline.devtools.demo import run_demo

    return 0 if run_demo() else 1


def cmd_events_replay(args: argparse.Namespace) -> int:
    from recs_pipeline.defs.achievements.store import replay_dead_letters

    if not args.all and not args.event_id:
        raise CliError("events replay: give --event-id N [N ...] or --all")
    engine = make_engine(_database_url(args))
    try:
        summary = replay_dead_letters(engine, event_ids=args.event_id or [], replay_all=args.all)
    finally:
        engine.dispose()
    print(summary.render())
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"recs-pipeline: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="recs-pipeline", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL of the app database (default: $RECS_DATABASE_URL, else the "
        "embedded SQLite demo database)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    init_db = sub.add_parser("init-db", help="create the app tables and achievement catalogue")
    init_db.set_defaults(func=cmd_init_db)

    seed = sub.add_parser("seed", help="fill the app tables with deterministic demo data")
    seed.add_argument("--users", type=_seed_user_count, default=10_000,
                      help=f"number of users (at most {MAX_SEED_USERS:,})")
    seed.add_argument("--seed", type=_non_negative_int, default=42, help="random seed")
    seed.add_argument("--now", type=_iso_datetime, default=None,
                      help="anchor date/time, ISO, UTC (default: today 00:00 UTC)")
    seed.add_argument("--replace", action="store_true",
                      help="delete existing demo data first (demo/test databases only)")
    seed.add_argument("--no-progress", action="store_true", help="no progress bars")
    seed.set_defaults(func=cmd_seed)

    bench = sub.add_parser("bench", help="benchmarks that print measured figures")
    bench_topics = bench.add_subparsers(dest="topic", required=True, parser_class=_Parser)
    for topic, module_path in BENCH_TOPICS.items():
        module = importlib.import_module(module_path)
        topic_parser = bench_topics.add_parser(topic, help=(module.__doc__ or "").splitlines()[0])
        module.add_arguments(topic_parser)
        topic_parser.set_defaults(func=module.run)

    events = sub.add_parser("events", help="operate on the app_events outbox (achievements)")
    events_sub = events.add_subparsers(dest="events_command", required=True, parser_class=_Parser)
    replay = events_sub.add_parser(
        "replay", help="re-drive dead-lettered achievement events once their cause is fixed"
    )
    which = replay.add_mutually_exclusive_group()
    which.add_argument("--event-id", type=_positive_int, nargs="+", default=None,
                       help="dead-lettered event ids to replay")
    which.add_argument("--all", action="store_true",
                       help="every dead-lettered event not successfully replayed yet")
    replay.set_defaults(func=cmd_events_replay)

    demo = sub.add_parser("demo", help="run every job once on $DAGSTER_HOME and summarise")
    demo.set_defaults(func=cmd_demo)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (DatabaseConfigError, CliError) as exc:
        print(f"recs-pipeline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("recs-pipeline: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
