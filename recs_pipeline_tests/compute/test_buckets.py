"""Buckets are stable (crc32) and scoring a bucket gives exactly the full run's rows."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from recs_pipeline.compute.buckets import bucket_index, bucket_key, user_buckets
from recs_pipeline.compute.scoring import ScoringParams, recommend
from recs_pipeline.defs.recommendations.reading import (
    build_user_feature_set,
    load_team_candidates,
    load_tournament_candidates,
    read_user_inputs,
)
from recs_pipeline_tests.recommendation_world import NOW, insert_world


def test_bucket_of_a_user_is_crc32_of_its_decimal_id() -> None:
    # Hand-checked values: crc32(b"1") = 0x83DCEFB7, crc32(b"42") = 0x3224B088.
    assert zlib.crc32(b"1") == 0x83DCEFB7
    assert list(user_buckets([1, 42], 8)) == [0x83DCEFB7 % 8, 0x3224B088 % 8] == [7, 0]
    ids = np.arange(1, 10_001)
    buckets = user_buckets(ids, 8)
    counts = np.bincount(buckets, minlength=8)
    assert counts.sum() == 10_000 and counts.min() > 1_100  # roughly even (expected 1250)
    assert list(user_buckets(ids[:5], 1)) == [0] * 5


def test_bucket_keys_round_trip() -> None:
    assert bucket_key(3) == "bucket_03" and bucket_index("bucket_03") == 3
    with pytest.raises(ValueError, match="not a bucket"):
        bucket_index("03")


def test_scoring_bucket_by_bucket_equals_one_full_run(engine: Engine) -> None:
    insert_world(engine)
    with engine.connect() as conn:
        users = build_user_feature_set(read_user_inputs(conn, NOW), NOW)
        tournament_candidates = load_tournament_candidates(conn, NOW)
        team_candidates = load_team_candidates(conn, NOW)
    params = ScoringParams()
    full = recommend(users, tournament_candidates, team_candidates, params, NOW)
    ids = users.features["user_id"].to_numpy()
    parts = [
        recommend(users, tournament_candidates, team_candidates, params, NOW,
                  user_ids=ids[user_buckets(ids, 3) == b])
        for b in range(3)
    ]
    assert full.tournaments.shape[0] > 0
    for kind in ("tournaments", "teams"):
        merged = pd.concat([getattr(p, kind) for p in parts], ignore_index=True)
        expected = getattr(full, kind)
        cols = list(expected.columns)
        pd.testing.assert_frame_equal(
            merged.sort_values(cols[:3]).reset_index(drop=True),
            expected.sort_values(cols[:3]).reset_index(drop=True),
        )
        assert sum(p.users_with_candidates[kind] for p in parts) == full.users_with_candidates[
            kind]
