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
    """The affected users' new lists: `published` (ranks 1..n) and what is left of their
    `reserve` (its rows keep their ranks), plus how many published rows came from the reserve."""

    published: pd.DataFrame
    reserve: pd.DataFrame
    backfilled: int
    short_users: np.ndarray  # users with fewer than top_k rows after the refill


def refill_lists(
    published: pd.DataFrame, reserve: pd.DataFrame, *, item_column: str, top_k: int
) -> Refill:
    """Each user's eligible published rows, topped up to `top_k` with their best eligible
    reserve rows, merged by score.

    Both frames hold the affected users' rows (user_id, item, rank, score, reason,
    model_version, generated_at) and a boolean `eligible`. A reserve row is only usable when it
    comes from the refresh that wrote the user's published rows (same model_version and
    generated_at): a reserve left from an earlier refresh is never mixed into a newer list (and
    is dropped). A still-eligible published row is never demoted to the reserve. Ties in score
    keep the published rows first, in their rank order, then the reserve's.
    """
    columns = ["user_id", item_column, *ROW_COLUMNS]
    generation = published.drop_duplicates("user_id")[["user_id", "model_version",
                                                       "generated_at"]]
    same_generation = reserve.merge(generation, on=["user_id", "model_version", "generated_at"],
                                    how="left", indicator=True)["_merge"].eq("both").to_numpy()
    kept = published[published["eligible"].to_numpy(dtype=bool)]
    usable = reserve[reserve["eligible"].to_numpy(dtype=bool) & same_generation]
    usable = usable[~pd.MultiIndex.from_frame(usable[["user_id", item_column]]).isin(
        pd.MultiIndex.from_frame(kept[["user_id", item_column]]))]
    open_slots = (top_k - kept.groupby("user_id").size()).clip(lower=0)
    usable = usable.sort_values(["user_id", "score", "rank"], ascending=[True, False, True],
                                kind="stable")
    slot = usable.groupby("user_id", sort=False).cumcount().to_numpy()
    promote = slot < open_slots.reindex(usable["user_id"].to_numpy(), fill_value=top_k).to_numpy()
    merged = pd.concat([kept.assign(_source=0), usable[promote].assign(_source=1)],
                       ignore_index=True)
    merged = merged.sort_values(["user_id", "score", "_source", "rank"],
                                ascending=[True, False, True, True], kind="stable")
    merged = merged.assign(rank=merged.groupby("user_id", sort=False).cumcount().to_numpy() + 1)
    counts = merged.groupby("user_id").size()
    users = np.unique(np.concatenate([published["user_id"].to_numpy(dtype=np.int64),
                                      reserve["user_id"].to_numpy(dtype=np.int64)]))
    short = users[counts.reindex(users, fill_value=0).to_numpy() < top_k]
    return Refill(
        published=merged[columns].reset_index(drop=True),
        reserve=usable[~promote][columns].reset_index(drop=True),
        backfilled=int((merged["_source"] == 1).sum()),
        short_users=short,
    )


def first_changed_rank(old: pd.DataFrame, new: pd.DataFrame, item_column: str) -> pd.Series:
    """Per user whose list changed, the first rank at which the old and new lists differ (an
    item or score, or a rank present on one side only); unchanged users are absent. Rows above
    it are the same in both, so only the tail from it needs rewriting."""
    keys = ["user_id", "rank"]
    both = old[[*keys, item_column, "score"]].merge(
        new[[*keys, item_column, "score"]], on=keys, how="outer", suffixes=("_old", "_new"))
    differs = (both[f"{item_column}_old"].ne(both[f"{item_column}_new"])
               | both["score_old"].ne(both["score_new"])).to_numpy()
    return both[differs].groupby("user_id")["rank"].min().astype(np.int64)
