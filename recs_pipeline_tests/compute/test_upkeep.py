"""The upkeep's merge of still-eligible rows and the reserve, on hand-built frames."""

from __future__ import annotations

import pandas as pd

from recs_pipeline.compute.upkeep import first_changed_rank, refill_lists

GEN = pd.Timestamp("2026-06-01 02:00")


def _rows(user: int, items: list[int], scores: list[float], first_rank: int,
          eligible: list[bool], version: str = "ranker-v1-x") -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": user, "tournament_id": items,
        "rank": range(first_rank, first_rank + len(items)), "score": scores,
        "reason": "r", "model_version": version, "generated_at": GEN, "eligible": eligible})


def test_refill_keeps_order_promotes_reserve_and_skips_other_generations() -> None:
    published = pd.concat([
        _rows(1, [10, 11, 12], [0.9, 0.8, 0.7], 1, [True, False, True]),
        _rows(2, [20, 21, 22], [0.9, 0.5, 0.4], 1, [False, False, True]),
    ])
    reserve = pd.concat([
        _rows(1, [13, 14], [0.6, 0.5], 4, [False, True]),
        _rows(2, [23], [0.3], 4, [True], version="blend-v1-old"),  # an earlier refresh's
    ])
    out = refill_lists(published, reserve, item_column="tournament_id", top_k=3)
    one = out.published[out.published["user_id"] == 1]
    assert one["tournament_id"].tolist() == [10, 12, 14]
    assert one["rank"].tolist() == [1, 2, 3]
    two = out.published[out.published["user_id"] == 2]
    assert two["tournament_id"].tolist() == [22] and two["rank"].tolist() == [1]
    assert out.backfilled == 1
    assert out.short_users.tolist() == [2]
    assert out.reserve.empty  # 13 ineligible, 14 promoted, 23 from another refresh


def test_refill_leaves_the_rest_of_the_reserve_with_its_ranks() -> None:
    published = _rows(1, [10, 11], [0.9, 0.8], 1, [False, True])
    reserve = _rows(1, [12, 13, 14], [0.7, 0.6, 0.5], 3, [True, True, True])
    out = refill_lists(published, reserve, item_column="tournament_id", top_k=2)
    assert out.published["tournament_id"].tolist() == [11, 12]
    assert out.published["rank"].tolist() == [1, 2]
    # only the promoted row leaves the reserve; the others are not rewritten
    assert out.reserve["tournament_id"].tolist() == [13, 14]
    assert out.reserve["rank"].tolist() == [4, 5]
    assert out.short_users.tolist() == []


def test_refill_never_demotes_a_still_eligible_published_row() -> None:
    # K lowered below the published length: every eligible published row stays, none promoted
    published = _rows(1, [10, 11, 12], [0.9, 0.8, 0.7], 1, [True, True, True])
    reserve = _rows(1, [13], [0.95], 4, [True])
    out = refill_lists(published, reserve, item_column="tournament_id", top_k=2)
    assert out.published["tournament_id"].tolist() == [10, 11, 12]
    assert out.backfilled == 0
    assert out.reserve["tournament_id"].tolist() == [13]


def test_first_changed_rank_marks_where_each_list_starts_to_differ() -> None:
    old = pd.concat([_rows(1, [10, 11, 12], [0.9, 0.8, 0.7], 1, [True] * 3),
                     _rows(2, [20, 21], [0.9, 0.8], 1, [True] * 2),
                     _rows(3, [30, 31], [0.9, 0.8], 1, [True] * 2),
                     _rows(4, [40], [0.9], 1, [True])])
    new = pd.concat([_rows(1, [10, 12, 13], [0.9, 0.7, 0.6], 1, [True] * 3),  # 11 removed
                     _rows(2, [20, 21], [0.9, 0.8], 1, [True] * 2),  # unchanged
                     _rows(3, [30], [0.9], 1, [True]),  # the tail shortened
                     _rows(4, [40, 41], [0.9, 0.5], 1, [True] * 2)])  # one row added
    first = first_changed_rank(old, new, "tournament_id")
    assert first.to_dict() == {1: 2, 3: 2, 4: 2}
