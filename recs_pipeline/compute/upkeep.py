"""Intraday upkeep of published lists: drop rows that stopped being eligible, refill from the
reserve (the same model's next-best rows), keep ranks 1..n and scores non-increasing.

Pure pandas: frames in, frames out; the SQL that finds stale rows and writes the result lives in
`recs_pipeline.defs.recommendations.upkeep`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ROW_COLUMNS = ("rank", "score", "reason", "model_version", "generated_at")


@dataclass
class Refill:
    """The affected users' new lists: `published` (ranks 1..n <= top_k) and what is left of their
    `reserve` (ranks top_k+1..), plus how many published rows came from the reserve."""

    published: pd.DataFrame
    reserve: pd.DataFrame
    backfilled: int
    short_users: np.ndarray  # users with fewer than top_k rows after the refill


def refill_lists(
    published: pd.DataFrame, reserve: pd.DataFrame, *, item_column: str, top_k: int
) -> Refill:
    """Each user's eligible published rows and eligible reserve rows, merged by score.

    Both frames hold the affected users' rows (user_id, item, rank, score, reason,
    model_version, generated_at) and a boolean `eligible`. A reserve row is only usable when it
    comes from the refresh that wrote the user's published rows (same model_version and
    generated_at): a reserve left from an earlier refresh is never mixed into a newer list.
    Ties in score keep the published rows first, in their rank order, then the reserve's.
    """
    columns = ["user_id", item_column, *ROW_COLUMNS]
    generation = published.drop_duplicates("user_id")[["user_id", "model_version",
                                                       "generated_at"]]
    same_generation = reserve.merge(generation, on=["user_id", "model_version", "generated_at"],
                                    how="left", indicator=True)["_merge"].eq("both").to_numpy()
    kept = published[published["eligible"].to_numpy(dtype=bool)].assign(_source=0)
    usable = reserve[reserve["eligible"].to_numpy(dtype=bool) & same_generation].assign(
        _source=1)
    merged = pd.concat([kept, usable], ignore_index=True)
    merged = merged.drop_duplicates(["user_id", item_column], keep="first")
    merged = merged.sort_values(["user_id", "score", "_source", "rank"],
                                ascending=[True, False, True, True], kind="stable")
    position = merged.groupby("user_id", sort=False).cumcount().to_numpy() + 1
    merged = merged.assign(rank=position)
    in_top = position <= top_k
    new_published = merged[in_top]
    counts = new_published.groupby("user_id").size()
    users = np.unique(np.concatenate([published["user_id"].to_numpy(dtype=np.int64),
                                      reserve["user_id"].to_numpy(dtype=np.int64)]))
    short = users[counts.reindex(users, fill_value=0).to_numpy() < top_k]
    return Refill(
        published=new_published[columns].reset_index(drop=True),
        reserve=merged[~in_top][columns].reset_index(drop=True),
        backfilled=int((new_published["_source"] == 1).sum()),
        short_users=short,
    )
