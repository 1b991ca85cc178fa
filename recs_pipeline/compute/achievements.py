"""Achievement rules as pure functions: event validation, rule evaluation, batch planning helpers.

Nothing here touches a database or Dagster; DataFrames and plain lists in and out.

Frames used throughout:

* events: `event_id`, `event_type`, `user_id` (nullable), `payload` (text or None), `created_at`
* metrics: `user_id` plus one integer column per metric (missing user/metric means 0)
* achievements: `achievement_id`, `code`, `event_type`, `metric`, `threshold`
* awards: `user_id`, `achievement_id`, `event_id`, `code`
* dead letters: `event_id`, `reason`, `detail`
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import pandas as pd

from recs_pipeline.schema import ACHIEVEMENT_EVENT_TYPES, ACHIEVEMENT_METRICS

# Dead-letter reasons (stable strings: they are stored and shown in run metadata).
REASON_UNKNOWN_EVENT_TYPE = "unknown_event_type"
REASON_NULL_USER = "null_user"
REASON_MALFORMED_PAYLOAD = "malformed_payload"
REASON_USER_NOT_FOUND = "user_not_found"  # unknown user id, or the user was deleted since
REASON_BAD_CREATED_AT = "bad_created_at"  # created_at NULL or not a timestamp
DEAD_LETTER_REASONS: tuple[str, ...] = (
    REASON_UNKNOWN_EVENT_TYPE,
    REASON_NULL_USER,
    REASON_MALFORMED_PAYLOAD,
    REASON_USER_NOT_FOUND,
    REASON_BAD_CREATED_AT,
)

EVENT_COLUMNS = ["event_id", "event_type", "user_id", "payload", "created_at"]
DEAD_LETTER_COLUMNS = ["event_id", "reason", "detail"]
AWARD_COLUMNS = ["user_id", "achievement_id", "event_id", "code"]


def empty_dead_letters() -> pd.DataFrame:
    return pd.DataFrame({"event_id": pd.Series(dtype="int64"),
                         "reason": pd.Series(dtype=object), "detail": pd.Series(dtype=object)})


def _payload_problem(payload: object) -> str | None:
    """Why a payload is unusable, or None. NULL is fine (the payload is optional)."""
    if payload is None or (isinstance(payload, float) and pd.isna(payload)):
        return None
    try:
        value = json.loads(payload) if isinstance(payload, str | bytes) else payload
    except (TypeError, ValueError) as exc:
        # The position only: the payload itself may hold anything and is never echoed.
        where = getattr(exc, "pos", "?")
        return f"payload is not valid JSON ({type(exc).__name__} at char {where})"
    if not isinstance(value, dict):
        return f"payload is JSON {type(value).__name__}, expected an object"
    return None


def classify_events(
    events: pd.DataFrame, known_event_types: Iterable[str] = ACHIEVEMENT_EVENT_TYPES
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a batch into (valid events, dead letters) on what the event row alone shows.

    Checked in order: unknown event type, NULL user, malformed JSON payload, a `created_at` that
    is NULL or not a timestamp (NaT after `parse_utc_naive`). Whether the user exists needs the
    database and is `drop_missing_users`'s job.
    """
    if events.empty:
        return events.copy(), empty_dead_letters()
    known = set(known_event_types)
    reasons: list[str | None] = []
    details: list[str | None] = []
    for event_type, user_id, payload, created_at in zip(
        events["event_type"], events["user_id"], events["payload"], events["created_at"],
        strict=True,
    ):
        if event_type not in known:
            reasons.append(REASON_UNKNOWN_EVENT_TYPE)
            details.append(f"event_type {str(event_type)[:40]!r} is not one of {sorted(known)}")
        elif user_id is None or pd.isna(user_id):
            reasons.append(REASON_NULL_USER)
            details.append("user_id is NULL")
        elif (problem := _payload_problem(payload)) is not None:
            reasons.append(REASON_MALFORMED_PAYLOAD)
            details.append(problem)
        elif pd.isna(created_at):
            reasons.append(REASON_BAD_CREATED_AT)
            details.append("created_at is NULL or not an ISO-8601 timestamp")
        else:
            reasons.append(None)
            details.append(None)
    reason = pd.Series(reasons, index=events.index, dtype=object)
    bad = reason.notna()
    dead = pd.DataFrame({
        "event_id": events.loc[bad, "event_id"].astype("int64"),
        "reason": reason[bad],
        "detail": pd.Series(details, index=events.index, dtype=object)[bad],
    }).reset_index(drop=True)
    valid = events.loc[~bad].copy()
    valid["user_id"] = valid["user_id"].astype("int64")
    return valid.reset_index(drop=True), dead


def drop_missing_users(
    events: pd.DataFrame, existing_user_ids: Iterable[int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split valid events into (events whose user exists, dead letters `user_not_found`)."""
    if events.empty:
        return events.copy(), empty_dead_letters()
    known = events["user_id"].isin(pd.Index(list(existing_user_ids), dtype="int64"))
    missing = events.loc[~known]
    dead = pd.DataFrame({
        "event_id": missing["event_id"].astype("int64"),
        "reason": REASON_USER_NOT_FOUND,
        "detail": [f"no users row for user_id {int(u)} (unknown, or deleted since the event)"
                   for u in missing["user_id"]],
    }).reset_index(drop=True)
    return events.loc[known].reset_index(drop=True), dead


def matching_achievements(achievements: pd.DataFrame, event_types: Iterable[str]) -> pd.DataFrame:
    """The achievements an event batch can trigger: matching event type and a known metric."""
    types = set(event_types)
    mask = achievements["event_type"].isin(types) & achievements["metric"].isin(
        ACHIEVEMENT_METRICS
    )
    return achievements.loc[mask].reset_index(drop=True)


def evaluate_awards(
    events: pd.DataFrame, metrics: pd.DataFrame, achievements: pd.DataFrame
) -> pd.DataFrame:
    """Awards earned by a batch: for each event, each active achievement of its event type whose
    metric for the event's user is >= threshold. One row per (user, achievement), attributed to the
    user's earliest triggering event in the batch.

    `achievements` must already be restricted to active ones; unknown metrics never award.
    """
    if events.empty or achievements.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c != "code" else object)
                             for c in AWARD_COLUMNS})
    rules = achievements.loc[achievements["metric"].isin(ACHIEVEMENT_METRICS)]
    pairs = events[["event_id", "event_type", "user_id"]].merge(
        rules[["achievement_id", "code", "event_type", "metric", "threshold"]], on="event_type"
    )
    long_metrics = (
        metrics.melt(id_vars="user_id", var_name="metric", value_name="value")
        if not metrics.empty else pd.DataFrame(columns=["user_id", "metric", "value"])
    )
    long_metrics["user_id"] = long_metrics["user_id"].astype("int64")
    pairs = pairs.merge(long_metrics, on=["user_id", "metric"], how="left")
    pairs["value"] = pd.to_numeric(pairs["value"], errors="coerce").fillna(0)
    earned = pairs.loc[pairs["value"] >= pairs["threshold"]]
    earned = earned.sort_values(["user_id", "achievement_id", "event_id"]).drop_duplicates(
        ["user_id", "achievement_id"], keep="first"
    )
    out = earned[AWARD_COLUMNS].reset_index(drop=True)
    for column in ("user_id", "achievement_id", "event_id"):
        out[column] = out[column].astype("int64")
    return out


# --- Batch planning helpers (used by the sensor) ---------------------------------------------


def split_batches(ids: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive chunks of at most `batch_size` ids, in order."""
    return [list(ids[i : i + batch_size]) for i in range(0, len(ids), batch_size)]


def compress_ranges(
    ids: Sequence[int], barriers: Sequence[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """Sorted ids as inclusive (first, last) ranges.

    Neighbouring ids are merged into one range unless a barrier range (ids in flight in another
    run) lies between them, so a range never spans someone else's work. Ids of other event types
    or already-processed ids between them are harmless: the job only loads pending achievement
    events inside a range.
    """
    ranges: list[tuple[int, int]] = []
    for event_id in sorted(ids):
        if ranges:
            first, last = ranges[-1]
            blocked = any(lo < event_id and hi > last for lo, hi in barriers)
            if not blocked:
                ranges[-1] = (first, event_id)
                continue
        ranges.append((event_id, event_id))
    return ranges


def batch_key(ids: Sequence[int]) -> str:
    """Deterministic identity of a batch: `achievements-<first>-<last>-<hash of the ids>`."""
    digest = hashlib.sha1(",".join(str(i) for i in ids).encode()).hexdigest()[:12]
    return f"achievements-{ids[0]}-{ids[-1]}-{digest}"
