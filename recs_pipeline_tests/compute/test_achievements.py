"""Pure achievement rules: validation, evaluation at thresholds, batch helpers."""

from __future__ import annotations

import pandas as pd

from recs_pipeline.compute.achievements import (
    batch_key,
    classify_events,
    compress_ranges,
    drop_missing_users,
    evaluate_awards,
    split_batches,
)

ACH = pd.DataFrame({
    "achievement_id": [1, 2, 3],
    "code": ["ten", "team3", "profile"],
    "event_type": ["tournament_completed", "team_joined", "profile_completed"],
    "metric": ["tournaments_completed", "teams_joined", "profile_completeness"],
    "threshold": [10, 3, 100],
})


def _events(rows: list[tuple[int, str, object, object]]) -> pd.DataFrame:
    return pd.DataFrame({
        "event_id": [r[0] for r in rows], "event_type": [r[1] for r in rows],
        "user_id": pd.Series([r[2] for r in rows], dtype=object),
        "payload": [r[3] for r in rows], "created_at": pd.Timestamp("2025-01-01"),
    })


def test_classify_events_reasons() -> None:
    events = _events([
        (1, "team_joined", 5, '{"team_id": 3}'),
        (2, "weird", 5, None),
        (3, "team_joined", None, None),
        (4, "team_joined", 5, "{not json"),
        (5, "team_joined", 5, '"a string"'),
        (6, "profile_completed", 6, None),
    ])
    valid, dead = classify_events(events)
    assert list(valid["event_id"]) == [1, 6]
    assert dict(zip(dead["event_id"], dead["reason"], strict=True)) == {
        2: "unknown_event_type", 3: "null_user", 4: "malformed_payload", 5: "malformed_payload"}
    assert "{not json" not in " ".join(dead["detail"])  # payload content is never echoed
    valid, missing = drop_missing_users(valid, [6])
    assert list(valid["event_id"]) == [6]
    assert list(missing["reason"]) == ["user_not_found"]


def test_evaluate_awards_at_threshold_boundaries() -> None:
    events = _events([
        (10, "tournament_completed", 1, None), (11, "tournament_completed", 2, None),
        (12, "team_joined", 1, None), (13, "team_joined", 2, None),
        (14, "profile_completed", 1, None), (15, "profile_completed", 3, None),
        (16, "tournament_completed", 1, None),
    ])
    events["user_id"] = events["user_id"].astype("int64")
    metrics = pd.DataFrame({
        "user_id": [1, 2], "tournaments_completed": [10, 9], "teams_joined": [2, 3],
        "profile_completeness": [100, 100],
    })  # user 3 has no metrics row: 0
    awards = evaluate_awards(events, metrics, ACH)
    got = set(zip(awards["user_id"], awards["achievement_id"], awards["event_id"], strict=True))
    # threshold reached (10, 3, 100) awards; threshold - 1 (9, 2) does not; first event wins;
    # user 2's 100 % profile is not evaluated: no profile_completed event for them
    assert got == {(1, 1, 10), (2, 2, 13), (1, 3, 14)}


def test_evaluate_awards_ignores_unknown_metrics() -> None:
    ach = pd.DataFrame({"achievement_id": [9], "code": ["x"], "event_type": ["team_joined"],
                        "metric": ["streak_days"], "threshold": [0]})
    events = _events([(1, "team_joined", 1, None)])
    metrics = pd.DataFrame({"user_id": [1], "teams_joined": [5]})
    assert evaluate_awards(events, metrics, ach).empty


def test_batch_helpers() -> None:
    assert split_batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert compress_ranges([1, 2, 5, 9, 10]) == [(1, 10)]
    # a range never spans another run's in-flight span
    assert compress_ranges([1, 2, 5, 9, 10], barriers=[(6, 8)]) == [(1, 5), (9, 10)]
    key = batch_key([3, 4, 8])
    assert key.startswith("achievements-3-8-") and key == batch_key([3, 4, 8])
    assert key != batch_key([3, 5, 8])
