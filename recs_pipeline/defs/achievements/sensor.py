"""`achievement_events_sensor`: the `app_events` outbox -> batched `achievements_job` runs.

Design (details and the exactly-once argument: docs/achievements.md):

* The source of truth for "done" is the pipeline-owned ledger (`achievement_event_ledger`); the
  sensor looks for achievement events NOT in it (an anti-join), never just "ids above the cursor".
* The cursor holds a low-water mark `lwm` (every achievement event with id <= lwm is in the
  ledger or in flight), the runs in flight, and recent (time, max id) observations. Each tick scans
  from `lwm - lookback_ids`, so an id that commits after a higher one is still found; in addition
  `lwm` never passes an id observed less than `settle_seconds` ago, so a late commit is caught even
  if it falls further back than the look-back.
* A batch is requested once: its id span is "in flight" (cursor + runs in the instance) and
  excluded from later scans until its run finishes; then `lwm` rewinds to the span's start so a
  late commit inside the span, or the events of a failed run, are picked up again.
* Every query is bounded by the `app_events` primary key (windows of `scan_window_ids`, at most
  `max_scan_ids_per_tick` per tick) and a tick requests at most `max_runs_per_tick` runs, so a
  tick stays far under Dagster's 60 s limit even with a million-event backlog.
* Losing the cursor costs a rescan, never a double award: the ledger skips processed events and
  awards are `ON CONFLICT DO NOTHING` on (user_id, achievement_id).

Settings are read when the code location loads (like a cron): `RECS_ACHIEVEMENTS_*` env vars,
see `AchievementSensorSettings.from_env`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import dagster as dg
from sqlalchemy.engine import Connection

from recs_pipeline.compute.achievements import batch_key, compress_ranges, split_batches
from recs_pipeline.compute.timestamps import utc_now
from recs_pipeline.defs.achievements import store
from recs_pipeline.defs.achievements.checks import outbox_evaluations
from recs_pipeline.defs.achievements.job import ACHIEVEMENTS_JOB_NAME, achievements_job
from recs_pipeline.defs.app_tables import USER_ACHIEVEMENTS_KEY
from recs_pipeline.resources import AppDatabase
from recs_pipeline.tags import (
    ACHIEVEMENTS_TAGS,
    MAX_RUNTIME_SECONDS,
    MAX_RUNTIME_TAG,
    RUN_KEY_TAG,
    UNFINISHED_RUN_STATUSES,
)

SENSOR_NAME = "achievement_events_sensor"
BATCH_TAG = "recs/achievements_batch"
FIRST_TAG = "recs/achievements_first_event_id"
LAST_TAG = "recs/achievements_last_event_id"
COUNT_TAG = "recs/achievements_event_count"
ENV_PREFIX = "RECS_ACHIEVEMENTS_"
_MAX_OBSERVATIONS = 240
# Half of user_achievements' warn window (app_tables.USER_ACHIEVEMENTS_FRESHNESS); the outbox
# checks (checks.py) are recorded at the same cadence.
CAUGHT_UP_HEARTBEAT_SECONDS = 300


@dataclass(frozen=True)
class AchievementSensorSettings:
    """Tuning of the sensor; every field can be set by `RECS_ACHIEVEMENTS_<FIELD>` (upper case)."""

    minimum_interval_seconds: int = 15
    batch_size: int = 5_000  # events per run
    max_runs_per_tick: int = 10
    max_in_flight_runs: int = 20  # no new requests while this many of our runs are unfinished
    lookback_ids: int = 10_000  # rescanned below the low-water mark every tick
    settle_seconds: float = 120.0  # lwm never passes an id seen more recently than this
    scan_window_ids: int = 100_000  # ids per anti-join query
    max_scan_ids_per_tick: int = 1_000_000
    in_flight_ttl_seconds: float = 600.0  # a requested batch with no run after this is re-planned
    # A batch takes seconds; a run still STARTED after this was orphaned (its worker died with a
    # host or daemon restart, which the default run launcher cannot detect). Run monitoring then
    # fails it (`dagster/max_runtime`) and the next tick re-requests the batch.
    max_run_seconds: int = MAX_RUNTIME_SECONDS["achievements"]

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < (0 if f.name in ("lookback_ids", "settle_seconds") else 1):
                raise dg.DagsterInvariantViolationError(
                    f"{ENV_PREFIX}{f.name.upper()}={getattr(self, f.name)} is out of range"
                )

    @classmethod
    def from_env(cls) -> AchievementSensorSettings:
        """Defaults, overridden by `RECS_ACHIEVEMENTS_<FIELD>` env vars (definition time)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = dg.EnvVar(f"{ENV_PREFIX}{f.name.upper()}").get_value(default=None)
            if raw is None or not raw.strip():
                continue
            try:
                values[f.name] = float(raw) if f.type in ("float", float) else int(raw)
            except ValueError:
                raise dg.DagsterInvariantViolationError(
                    f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a number"
                ) from None
        return cls(**values)


@dataclass
class InFlight:
    key: str
    first: int
    last: int
    requested_at: float


@dataclass
class CursorState:
    lwm: int = 0
    observations: list[tuple[float, int]] = field(default_factory=list)
    in_flight: list[InFlight] = field(default_factory=list)
    checked_at: float = 0.0  # when the outbox checks were last recorded

    @classmethod
    def parse(cls, cursor: str | None) -> CursorState:
        """A cursor we cannot read starts over from 0: safe (a rescan), never a double award."""
        if not cursor:
            return cls()
        try:
            raw = json.loads(cursor)
            return cls(
                lwm=int(raw["lwm"]),
                observations=[(float(t), int(i)) for t, i in raw.get("obs", [])],
                in_flight=[InFlight(str(k), int(f), int(la), float(t))
                           for k, f, la, t in raw.get("inflight", [])],
                checked_at=float(raw.get("checked", 0.0)),
            )
        except (ValueError, KeyError, TypeError):
            return cls()

    def serialize(self) -> str:
        return json.dumps({
            "v": 1,
            "lwm": self.lwm,
            "obs": [[round(t, 3), i] for t, i in self.observations],
            "inflight": [[e.key, e.first, e.last, round(e.requested_at, 3)]
                         for e in self.in_flight],
            "checked": round(self.checked_at, 3),
        }, separators=(",", ":"))


def settle_bound(
    observations: Sequence[tuple[float, int]], now: float, settle: float
) -> int | None:
    """Highest max-id observed at least `settle` seconds ago (None if none is that old)."""
    old = [i for t, i in observations if t <= now - settle]
    return max(old) if old else None


def prune_observations(
    observations: Sequence[tuple[float, int]], now: float, settle: float
) -> list[tuple[float, int]]:
    """Keep the newest observation old enough to bound lwm, and every younger one."""
    old = [o for o in observations if o[0] <= now - settle]
    young = [o for o in observations if o[0] > now - settle]
    kept = ([max(old)] if old else []) + sorted(young)
    return kept[-_MAX_OBSERVATIONS:]


@dataclass
class TickPlan:
    run_requests: list[dg.RunRequest]
    state: CursorState
    found: int
    in_flight_runs: int
    scanned_to: int
    top: int

    @property
    def caught_up(self) -> bool:
        """Nothing pending, nothing in flight, scanned to the newest event."""
        return (not self.run_requests and self.found == 0 and self.in_flight_runs == 0
                and self.scanned_to >= self.top)

    def summary(self) -> str:
        return (f"{len(self.run_requests)} runs requested for {self.found} pending events found; "
                f"{self.in_flight_runs} runs in flight; lwm={self.state.lwm}, "
                f"scanned to {self.scanned_to} of max id {self.top}")


def _refresh_in_flight(
    instance: dg.DagsterInstance | None, state: CursorState, settings: AchievementSensorSettings,
    now: float,
) -> tuple[list[InFlight], int]:
    """In-flight batches after checking the instance; returns (entries, rewound lwm)."""
    entries = {e.key: e for e in state.in_flight}
    lwm = state.lwm
    if instance is None:
        return list(entries.values()), lwm
    active_keys: set[str] = set()
    for run in instance.get_runs(
        dg.RunsFilter(job_name=ACHIEVEMENTS_JOB_NAME, statuses=UNFINISHED_RUN_STATUSES), limit=1000
    ):
        try:  # also runs we do not know about (a lost cursor): their span is in flight too
            key = run.tags.get(RUN_KEY_TAG) or run.run_id
            entries.setdefault(key, InFlight(key, int(run.tags[FIRST_TAG]),
                                             int(run.tags[LAST_TAG]), now))
            active_keys.add(key)
        except (KeyError, ValueError):
            continue  # a manual run without our tags: nothing to exclude
    unknown = [k for k in entries if k not in active_keys]
    finished: set[str] = set()
    if unknown:
        finished = {
            run.tags.get(RUN_KEY_TAG, "")
            for run in instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: unknown}), limit=5000)
        }
    kept: list[InFlight] = []
    for key, entry in entries.items():
        if key in active_keys:
            kept.append(entry)
        elif key in finished or now - entry.requested_at > settings.in_flight_ttl_seconds:
            # Done (or never launched): rescan its span once, for late commits or failures.
            lwm = min(lwm, entry.first - 1)
        else:
            kept.append(entry)  # requested, run not created yet
    return kept, lwm


def _attempts(instance: dg.DagsterInstance | None, bases: list[str]) -> dict[str, int]:
    """How many runs each batch identity already had (all finished: active ones are excluded)."""
    if instance is None or not bases:
        return {}
    counts: dict[str, int] = {}
    for run in instance.get_runs(dg.RunsFilter(tags={BATCH_TAG: bases}), limit=10_000):
        base = run.tags.get(BATCH_TAG, "")
        counts[base] = counts.get(base, 0) + 1
    return counts


def plan_tick(
    conn: Connection,
    instance: dg.DagsterInstance | None,
    cursor: str | None,
    settings: AchievementSensorSettings,
    now: float | None = None,
) -> TickPlan:
    """One sensor evaluation: find pending events, cut batches, return requests + new cursor."""
    now = time.time() if now is None else now
    state = CursorState.parse(cursor)
    in_flight, lwm = _refresh_in_flight(instance, state, settings, now)
    top = store.max_event_id(conn)
    observations = [*state.observations, (now, top)]

    free_runs = max(
        0, min(settings.max_runs_per_tick, settings.max_in_flight_runs - len(in_flight))
    )
    capacity = free_runs * settings.batch_size
    wanted = max(capacity, 1)  # with no capacity we still look for the first pending id (lwm)
    exclude = sorted((e.first, e.last) for e in in_flight)
    start = max(0, lwm - settings.lookback_ids)
    found: list[int] = []
    lo = scanned_to = start
    while lo < top and lo - start < settings.max_scan_ids_per_tick and len(found) < wanted:
        hi = min(lo + settings.scan_window_ids, top)
        found += store.scan_pending_ids(conn, lo, hi, limit=wanted - len(found), exclude=exclude)
        scanned_to = found[-1] if len(found) >= wanted else hi
        lo = hi

    to_request = found[:capacity]
    candidate = found[len(to_request)] - 1 if len(found) > len(to_request) else scanned_to
    bound = settle_bound(observations, now, settings.settle_seconds)
    # Never past an unrequested pending id, nor past what was visible `settle_seconds` ago.
    new_lwm = min(candidate, lwm if bound is None else bound)

    batches = split_batches(to_request, settings.batch_size)
    bases = [batch_key(batch) for batch in batches]
    attempts = _attempts(instance, bases)
    requests: list[dg.RunRequest] = []
    for batch, base in zip(batches, bases, strict=True):
        n = attempts.get(base, 0)
        key = base if n == 0 else f"{base}-r{n}"
        ranges = compress_ranges(batch, exclude)
        requests.append(dg.RunRequest(
            run_key=key,
            run_config={"ops": {"load_events": {"config": {
                "event_id_ranges": [[first, last] for first, last in ranges]}}}},
            tags={**ACHIEVEMENTS_TAGS, BATCH_TAG: base, FIRST_TAG: str(batch[0]),
                  LAST_TAG: str(batch[-1]), COUNT_TAG: str(len(batch)),
                  MAX_RUNTIME_TAG: str(settings.max_run_seconds)},
        ))
        in_flight.append(InFlight(key, batch[0], batch[-1], now))

    new_state = CursorState(
        lwm=max(0, new_lwm),
        observations=prune_observations(observations, now, settings.settle_seconds),
        in_flight=in_flight,
        checked_at=state.checked_at,
    )
    return TickPlan(requests, new_state, len(found) if capacity else 0, len(in_flight),
                    scanned_to, top)


def build_achievement_events_sensor(
    settings: AchievementSensorSettings | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The sensor with the given (default: environment) settings."""
    settings = settings or AchievementSensorSettings.from_env()

    @dg.sensor(
        name=SENSOR_NAME,
        job=achievements_job,
        minimum_interval_seconds=settings.minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Turns new tournament_completed / team_joined / profile_completed rows of the "
            f"app_events outbox into achievements_job runs of up to {settings.batch_size} events "
            "(ledger anti-join + low-water mark; see docs/achievements.md)."
        ),
    )
    def achievement_events_sensor(
        context: dg.SensorEvaluationContext, app_db: AppDatabase
    ) -> dg.SensorResult:
        engine = app_db.get_engine()
        store.ensure_tables(engine)
        instance = context.instance if _has_instance(context) else None
        with engine.connect() as conn:
            plan = plan_tick(conn, instance, context.cursor, settings)
            events: list[dg.AssetMaterialization | dg.AssetCheckEvaluation] = []
            if instance is not None:
                if plan.caught_up and _heartbeat_due(instance):
                    events += caught_up_heartbeat(conn, plan)
                if time.time() - plan.state.checked_at >= CAUGHT_UP_HEARTBEAT_SECONDS:
                    events += outbox_evaluations(store.outbox_health(conn), utc_now())
                    plan.state.checked_at = time.time()
        context.log.info(plan.summary())
        return dg.SensorResult(
            run_requests=plan.run_requests,
            cursor=plan.state.serialize(),
            asset_events=events,
            skip_reason=None if plan.run_requests or events else plan.summary(),
        )

    return achievement_events_sensor


def _heartbeat_due(instance: dg.DagsterInstance) -> bool:
    latest = instance.get_latest_materialization_event(USER_ACHIEVEMENTS_KEY)
    return latest is None or time.time() - latest.timestamp >= CAUGHT_UP_HEARTBEAT_SECONDS


def caught_up_heartbeat(conn: Connection, plan: TickPlan) -> list[dg.AssetMaterialization]:
    """`user_achievements` is current: every outbox event is processed. Recorded as a
    materialization (at most every `CAUGHT_UP_HEARTBEAT_SECONDS`) so its freshness policy
    measures how long events wait, not how long the outbox has been quiet."""
    return [dg.AssetMaterialization(
        asset_key=USER_ACHIEVEMENTS_KEY,
        description=f"outbox caught up (checked by {SENSOR_NAME}); no run needed",
        metadata={"dagster/row_count": store.user_achievement_rows(conn),
                  "awards": 0, "events_processed": 0, "pending_events": 0,
                  "outbox_max_event_id": plan.top},
    )]


def _has_instance(context: dg.SensorEvaluationContext) -> bool:
    try:
        return context.instance is not None
    except Exception:  # built without an instance (unit use): plan from the cursor alone
        return False


def settings_as_dict(settings: AchievementSensorSettings) -> dict[str, Any]:
    return asdict(settings)


# Settings: RECS_ACHIEVEMENTS_* env vars, read when the code location loads (docs/achievements.md).
achievement_events_sensor = build_achievement_events_sensor()
