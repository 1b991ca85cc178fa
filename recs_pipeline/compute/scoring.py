"""Blend scoring and top-K selection for tournament and team recommendations.

Signals per (user, candidate), each in [0, 1]:

* affinity: the user's smoothed share of past participations with the candidate's stable
  attributes (game, region, size class, start slot, skill band), favourite value = 1. A user
  without history gets the population's shares, so cold start falls back to what is popular;
* collaborative: cosine of the user's factors and the candidate's fold-in embedding of its
  registrants / members (`recs_pipeline.compute.collaborative`);
* co-play: distinct players the user shared a past tournament or team with who are registered /
  on the team, `1 - exp(-n / 2)`;
* skill: how central the user's rating is in the tournament's band (or how close to the
  registrants' / members' average);
* popularity: fill rate.

The blend is a weighted mean, mapped to (0, 1] as `0.01 + 0.99 * blend`.

Only eligible pairs are scored: users and candidates are grouped by (game, region) so a batch of
users is multiplied only against the candidates it may see; the remaining per-user rules (skill
band, already registered / member) are masks. Top K per (group, batch) with `np.argpartition`,
then the per-user merge across a user's games is another `argpartition` over at most
(games x K) columns. No per-user Python loop, no per-user SQL.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recs_pipeline.compute.candidates import CandidateSet
from recs_pipeline.compute.collaborative import (
    CollaborativeModel,
    CollaborativeParams,
    fit_collaborative,
)
from recs_pipeline.compute.eligibility import skill_in_band
from recs_pipeline.compute.features import (
    SIZE_LABELS,
    SKILL_RANGE,
    SLOT_LABELS,
    UserFeatureSet,
    smoothed_affinity,
)
from recs_pipeline.compute.names import (
    display_names,
    key_codes,
    name_vectors,
    organiser_key,
    series_key,
)
from recs_pipeline.compute.ranker import CandidatePool
from recs_pipeline.compute.reranking import (
    HOUR_BINS,
    BlendParts,
    ItemSignals,
    UserSignals,
    hour_bin,
    pair_features,
    utc_offsets,
)
from recs_pipeline.schema import GLOBAL_REGION, KNOWN_REGIONS, MAX_SKILL_RATING

MODEL_NAME = "blend-v1"
MODEL_SUFFIX = "-v1"  # a contender's model_version is "<name>-v1-<digest>"
REASON_MAX_CHARS = 200
CONTEXT_STATUSES = ("in_progress", "completed")  # tournaments that count as "played together"
SIGNALS = ("affinity", "collaborative", "coplay", "skill", "popularity")
RECOMMENDATION_COLUMNS = ("user_id", "rank", "score", "reason", "model_version", "generated_at")


@dataclass
class BlendWeights:
    affinity: float
    collaborative: float
    coplay: float
    skill: float
    popularity: float

    def vector(self) -> np.ndarray:
        w = np.array([getattr(self, s) for s in SIGNALS], dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"blend weights must be >= 0 with a positive sum, got {w}")
        return (w / w.sum()).astype(np.float32)


@dataclass
class ScoringParams:
    """Parameters of the blend; `model_version()` hashes them."""

    top_k: int = 10
    max_batch_cells: int = 2_000_000  # users x candidates per score matrix (memory bound)
    smoothing: float = 1.0  # pseudo-count of the affinity prior
    max_context_size: int = 256  # bigger tournaments/teams are not "played together"
    pool_size: int = 40  # first-stage candidates per user and game that a reranker re-orders
    collaborative: CollaborativeParams = field(
        default_factory=lambda: CollaborativeParams(factors=32, n_iter=3)
    )
    # Weights and smoothing tuned on validation data (seed 7 demo data, 5k and 50k users; see
    # docs/quality.md), never on the reported seed-42 figures. The fill rate got weight 0: it
    # only hurt (people don't pick a cup because it is filling up).
    tournament_weights: BlendWeights = field(
        default_factory=lambda: BlendWeights(0.50, 0.30, 0.20, 0.10, 0.0)
    )
    team_weights: BlendWeights = field(
        default_factory=lambda: BlendWeights(0.10, 0.15, 0.20, 0.20, 0.0)
    )

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_version(self, name: str = "blend", extra: str = "") -> str:
        """`<name>-v1-<hash of the parameters (and `extra`, e.g. a fitted model's hash)>`."""
        digest = hashlib.sha1(
            (json.dumps(self.as_dict(), sort_keys=True) + extra).encode(), usedforsecurity=False
        ).hexdigest()[:8]
        return f"{name}{MODEL_SUFFIX}-{digest}"


class PairScorer(Protocol):
    """A second-stage ranker: scores pool rows of `compute.reranking.PAIR_FEATURES`."""

    name: str

    def score(self, kind: str, features: np.ndarray) -> np.ndarray: ...

    def fingerprint(self) -> str: ...


@dataclass
class Recommendations:
    """Both kinds of recommendations plus what the run learned about itself."""

    tournaments: pd.DataFrame  # user_id, tournament_id, rank, score, reason, model_version, ...
    teams: pd.DataFrame
    model_version: str  # both kinds' versions ("a+b" when they differ)
    timings: dict[str, float]
    # users with at least one eligible candidate, per kind (the coverage denominator)
    users_with_candidates: dict[str, int]
    stats: dict[str, Any]
    # per kind: the model_version its rows carry
    model_versions: dict[str, str] = field(default_factory=dict)
    # per kind, when asked for (`collect_pools`): the first stage's pool with its features
    pools: dict[str, CandidatePool] = field(default_factory=dict)
    # per kind, when asked for (`reserve`): each user's next-best rows after the top K (ranks
    # K+1..K+reserve, same columns), which the intraday upkeep promotes when rows go stale
    reserves: dict[str, pd.DataFrame] = field(default_factory=dict)


# --- helpers -----------------------------------------------------------------------------------


def _positions(vocabulary: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ids in a sorted vocabulary and a mask of ids that are present."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(vocabulary) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    pos = np.searchsorted(vocabulary, ids)
    pos_c = np.minimum(pos, len(vocabulary) - 1)
    found = vocabulary[pos_c] == ids
    return pos_c, found


def _binary_matrix(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape, dtype=np.float32
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _pair_matrix(
    frame: pd.DataFrame, row_col: str, col_col: str, row_vocab: np.ndarray, col_vocab: np.ndarray
) -> sp.csr_matrix:
    r, rf = _positions(row_vocab, frame[row_col].to_numpy())
    c, cf = _positions(col_vocab, frame[col_col].to_numpy())
    keep = rf & cf
    return _binary_matrix(r[keep], c[keep], (len(row_vocab), len(col_vocab)))


def _one_hot(codes: np.ndarray, n_values: int) -> sp.csr_matrix:
    n = len(codes)
    return _binary_matrix(np.arange(n), codes.astype(np.int64), (n, n_values))


def _batches(n_rows: int, n_cols: int, max_cells: int) -> Iterator[slice]:
    size = max(64, max_cells // max(n_cols, 1))
    for start in range(0, n_rows, size):
        yield slice(start, min(start + size, n_rows))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0).astype(np.float32)


def coplay_counts(
    contexts: sp.csr_matrix,
    attached: sp.spmatrix | list[sp.spmatrix],
    rows: np.ndarray,
    max_cells: int,
) -> sp.csr_matrix | list[sp.csr_matrix]:
    """Distinct co-players attached to each item, for the given user rows.

    contexts: (n_users, n_contexts) binary, who played in which past tournament / team.
    attached: (n_users, n_items) binary, registrants / members of the candidate items (or a list
    of such matrices: the co-player matrix of each batch is then reused for all of them).
    Returns (len(rows), n_items) counts of OTHER users who share >= 1 context with the row's
    user and are attached to the item. Computed in batches of users (the co-player matrix of a
    batch is sparse and short-lived).
    """
    single = not isinstance(attached, list)
    targets = [sp.csr_matrix(a, dtype=np.float32) for a in ([attached] if single else attached)]
    contexts = sp.csr_matrix(contexts, dtype=np.float32)
    contexts_t = sp.csr_matrix(contexts.T)
    has_context = np.asarray(contexts.getnnz(axis=1) > 0)
    per_row = max(1.0, float(contexts.nnz) / max(contexts.shape[0], 1))
    avg_size = max(1.0, float(contexts.nnz) / max(contexts.shape[1], 1))
    width = int(per_row * avg_size) + 1  # rough co-players per user
    blocks: list[list[sp.csr_matrix]] = [[] for _ in targets]
    for sl in _batches(len(rows), width, max_cells):
        batch = rows[sl]
        coplayers = contexts[batch] @ contexts_t
        coplayers.data[:] = 1.0
        own = sp.diags(has_context[batch].astype(np.float32))
        for out, target in zip(blocks, targets, strict=True):
            # The user shares their own contexts with themself: remove that self-path.
            counts = sp.csr_matrix(coplayers @ target - own @ target[batch])
            counts.eliminate_zeros()
            out.append(counts)
    results = [
        sp.csr_matrix(sp.vstack(b, format="csr")) if b
        else sp.csr_matrix((0, t.shape[1]), dtype=np.float32)
        for b, t in zip(blocks, targets, strict=True)
    ]
    return results[0] if single else results


# --- scoring core ------------------------------------------------------------------------------


@dataclass
class _KindInputs:
    """Everything one kind (tournaments or teams) needs inside the group loop."""

    kind: str
    items: pd.DataFrame
    attached: sp.csr_matrix  # (n_users_vocab, n_items) registrants / members
    item_emb: np.ndarray  # (n_items, d) unit rows
    coplay: sp.csr_matrix  # (n_scored, n_items)
    affinity_terms: list[tuple[np.ndarray, np.ndarray]]  # (scored x values, item codes)
    weights: np.ndarray
    allow_global: bool
    played_game: np.ndarray  # (n_scored, n_games) bool: the user has history in that game
    item_game_code: np.ndarray  # (n_items,) code of each candidate's game
    item_signals: ItemSignals | None = None  # what the pair features read (second stage)
    scorer: PairScorer | None = None  # re-orders the first stage's pool when set


@dataclass
class _Picked:
    user_pos: list[np.ndarray] = field(default_factory=list)
    item_idx: list[np.ndarray] = field(default_factory=list)
    blend: list[np.ndarray] = field(default_factory=list)
    reason: list[np.ndarray] = field(default_factory=list)  # int8 index into _REASON_KINDS
    coplay: list[np.ndarray] = field(default_factory=list)
    skill: list[np.ndarray] = field(default_factory=list)
    users_with_candidates: list[np.ndarray] = field(default_factory=list)
    # the whole first-stage pool with its features (only when collecting)
    pool_user_pos: list[np.ndarray] = field(default_factory=list)
    pool_item_idx: list[np.ndarray] = field(default_factory=list)
    pool_features: list[np.ndarray] = field(default_factory=list)

    def consume_rows(self) -> tuple[np.ndarray, ...]:
        """(user_pos, item_idx, blend, reason, coplay, skill) as whole arrays; each list's chunks
        are released once joined (kept, they doubled the picked rows' memory: ~0.8 GB at 1M
        users)."""
        joined = []
        for chunks in (self.user_pos, self.item_idx, self.blend, self.reason, self.coplay,
                       self.skill):
            joined.append(np.concatenate(chunks))
            chunks.clear()
        return tuple(joined)


def _skill_values(
    kind: str, s: np.ndarray, avg: np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """The skill signal for broadcastable user skills `s` and item arrays (float32)."""
    s = s.astype(np.float32, copy=False)
    # Closeness to the people already there: 1 at equal rating, ~0.37 at 500 apart.
    near_avg = np.exp(-np.abs(s - np.nan_to_num(avg, nan=0.0).astype(np.float32)) / 500.0)
    near_avg = np.where(np.isnan(avg), np.float32(0.5), near_avg)
    if kind == "teams":
        return near_avg.astype(np.float32, copy=False)
    banded = ~(np.isnan(low) & np.isnan(high))
    lo = np.where(np.isnan(low), SKILL_RANGE[0], low).astype(np.float32)
    hi = np.where(np.isnan(high), SKILL_RANGE[1], high).astype(np.float32)
    half = np.maximum((hi - lo) / 2.0, 1.0)
    in_band = np.clip(1.0 - np.abs(s - (lo + hi) / 2.0) / half, 0.0, 1.0)
    return np.where(banded, 0.5 + 0.5 * in_band, near_avg).astype(np.float32, copy=False)


def _score_kind(
    inp: _KindInputs,
    *,
    scored_rows: np.ndarray,
    user_regions: np.ndarray,
    profile_pos: np.ndarray,
    profile_game: np.ndarray,
    profile_skill: np.ndarray,
    user_factors: np.ndarray,
    has_history: np.ndarray,
    params: ScoringParams,
    user_signals: UserSignals | None = None,
    collect: bool = False,
    reserve: int = 0,
) -> _Picked:
    """The first stage (blend, masks, each user's best candidates per (game, region) group) and,
    with a scorer or when collecting, the second: pair features for the best `pool_size`, and
    the scorer's order of them."""
    picked = _Picked()
    second_stage = (inp.scorer is not None or collect) and user_signals is not None
    items = inp.items
    if items.empty or len(profile_pos) == 0:
        return picked
    k = params.top_k + reserve  # rows kept per user: the top K, then the reserve
    w = inp.weights
    item_game = items["game_id"].to_numpy(dtype=np.int64)
    item_region = items["region"].astype(str).to_numpy(dtype=object)
    fill = items["fill_rate"].to_numpy(dtype=np.float32)
    avg = items["avg_skill"].to_numpy(dtype=np.float64)
    nan = np.full(len(items), np.nan)
    low = items["skill_min"].to_numpy(dtype=np.float64) if "skill_min" in items else nan
    high = items["skill_max"].to_numpy(dtype=np.float64) if "skill_max" in items else nan
    # Affinity as one GEMM: [A_game | A_region | ...] (users x values) @ one-hot (values x items)
    n_terms = max(len(inp.affinity_terms), 1)
    aff_users = np.hstack([m for m, _ in inp.affinity_terms]).astype(np.float32) * (
        w[0] / n_terms)
    onehot = np.zeros((aff_users.shape[1], len(items)), dtype=np.float32)
    offset = 0
    for matrix, codes in inp.affinity_terms:
        onehot[offset + codes, np.arange(len(items))] = 1.0
        offset += matrix.shape[1]
    attached_csc = inp.attached.tocsc()
    tie_step = 1e-7 / max(len(items), 1)  # all tie-breaks together stay below the 1e-6 grid
    groups = pd.DataFrame(
        {"pos": profile_pos, "game": profile_game, "region": user_regions[profile_pos]}
    ).groupby(["game", "region"], sort=True).indices
    for (game, region), prof_idx in groups.items():
        same_game = item_game == game
        same_region = item_region == region
        if inp.allow_global:
            same_region = same_region | (item_region == GLOBAL_REGION)
        cols = np.flatnonzero(same_game & same_region)
        if len(cols) == 0:
            continue
        pos_all = profile_pos[prof_idx]
        skill_all = profile_skill[prof_idx]
        attached_cols = sp.csr_matrix(attached_csc[:, cols])
        emb_w = np.ascontiguousarray(inp.item_emb[cols].T) * w[1]
        onehot_cols = np.ascontiguousarray(onehot[:, cols])
        pop = fill[cols] * w[4]
        g_low, g_high, g_avg = low[cols], high[cols], avg[cols]
        for sl in _batches(len(pos_all), len(cols), params.max_batch_cells):
            pos = pos_all[sl]
            skill = skill_all[sl].astype(np.float64)
            rows = scored_rows[pos]
            n_b, n_c = len(pos), len(cols)
            blend = aff_users[pos] @ onehot_cols
            if emb_w.shape[0]:
                blend += np.clip(user_factors[rows] @ emb_w, 0.0, w[1])
            blend += pop[None, :]
            blend += w[3] * _skill_values(inp.kind, skill[:, None], g_avg[None, :],
                                          g_low[None, :], g_high[None, :])
            # co-play is sparse: add it only where someone attached is a co-player
            cop = sp.coo_matrix(inp.coplay[pos][:, cols]) if inp.coplay.nnz else None
            if cop is not None and cop.nnz:
                blend[cop.row, cop.col] += w[2] * (1.0 - np.exp(-cop.data / 2.0))
            # masks: skill band (NULL = open side), already registered / member
            blend[~skill_in_band(skill, g_low, g_high)] = -np.inf
            registered = sp.coo_matrix(attached_cols[rows])
            blend[registered.row, registered.col] = -np.inf
            # A ranking that does not depend on which users share the batch (the bucketed
            # refresh scores subsets): float32 products of differently shaped batches differ in
            # the last bits, so compare blends on a 1e-6 grid and break exact ties by candidate
            # index (the earlier-listed candidate first).
            blend = np.round(blend.astype(np.float64), 6) - cols[None, :] * tie_step
            eligible_any = np.isfinite(blend).any(axis=1)
            picked.users_with_candidates.append(pos[eligible_any])
            if not eligible_any.any():
                continue
            kk = min(max(k, params.pool_size) if second_stage else k, n_c)
            top = (np.argpartition(-blend, kk - 1, axis=1)[:, :kk] if n_c > kk
                   else np.broadcast_to(np.arange(n_c), (n_b, n_c)))
            top_blend = np.take_along_axis(blend, top, axis=1)
            r_idx, c_idx = np.nonzero(np.isfinite(top_blend))
            chosen = top[r_idx, c_idx]
            # The chosen pairs' individual contributions, for the reason sentence.
            ccols = cols[chosen]
            n_coplay = (np.asarray(inp.coplay[pos[r_idx], ccols]).ravel()
                        if inp.coplay.nnz else np.zeros(len(r_idx)))
            contrib = np.empty((len(r_idx), 5), dtype=np.float32)
            contrib[:, 0] = np.einsum("ij,ji->i", aff_users[pos[r_idx]], onehot[:, ccols])
            contrib[:, 1] = (np.clip(np.einsum("ij,ji->i", user_factors[rows[r_idx]],
                                               emb_w[:, chosen]), 0.0, w[1])
                             if emb_w.shape[0] else 0.0)
            contrib[:, 2] = w[2] * (1.0 - np.exp(-n_coplay / 2.0))
            contrib[:, 3] = w[3] * _skill_values(inp.kind, skill[r_idx], avg[ccols], low[ccols],
                                                 high[ccols])
            contrib[:, 4] = fill[ccols] * w[4]
            value = top_blend[r_idx, c_idx]
            if second_stage:
                assert user_signals is not None and inp.item_signals is not None
                skill_signal = _skill_values(inp.kind, skill[r_idx], avg[ccols], low[ccols],
                                             high[ccols])
                parts = BlendParts(
                    blend=value.astype(np.float32),
                    affinity=[m[pos[r_idx], codes[ccols]] for m, codes in inp.affinity_terms],
                    collaborative_cosine=(
                        np.einsum("ij,ij->i", user_factors[rows[r_idx]], inp.item_emb[ccols])
                        if inp.item_emb.shape[1] else np.zeros(len(r_idx), np.float32)),
                    coplay_players=n_coplay.astype(np.float32),
                    skill_signal=skill_signal, skill=skill[r_idx], avg_skill=avg[ccols],
                    skill_min=low[ccols], skill_max=high[ccols], fill_rate=fill[ccols],
                )
                features = pair_features(pos[r_idx], rows[r_idx], ccols, parts,
                                         inp.item_signals, user_signals)
                if collect:
                    picked.pool_user_pos.append(pos[r_idx])
                    picked.pool_item_idx.append(ccols)
                    picked.pool_features.append(features)
                if inp.scorer is not None:
                    # the same 1e-6 grid and index tie-break as the blend
                    learned = inp.scorer.score(inp.kind, features)
                    value = np.round(learned.astype(np.float64), 6) - ccols * tie_step
                keep, _ = top_k_per_user(r_idx, value, k)
                r_idx, ccols, value = r_idx[keep], ccols[keep], value[keep]
                contrib, n_coplay = contrib[keep], n_coplay[keep]
            played = inp.played_game[pos[r_idx], inp.item_game_code[ccols]]
            picked.user_pos.append(pos[r_idx])
            picked.item_idx.append(ccols)
            picked.blend.append(value)
            picked.reason.append(_reason_kind(contrib, n_coplay, has_history[pos[r_idx]],
                                              played))
            picked.coplay.append(n_coplay.astype(np.int32))
            picked.skill.append(skill[r_idx].astype(np.int32))
    return picked


def top_k_per_user(
    user_pos: np.ndarray, scores: np.ndarray, k: int, chunk_users: int = 200_000
) -> tuple[np.ndarray, np.ndarray]:
    """Pick each user's k best rows among pre-selected candidate rows.

    Returns (row indices ordered by user then rank, ranks 1..n). Rows are laid out as a padded
    (users x max rows per user) matrix, `np.argpartition` selects k, and only those k are
    ordered.
    """
    if len(user_pos) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.argsort(user_pos, kind="stable")
    users_sorted = user_pos[order]
    _, starts, counts = np.unique(users_sorted, return_index=True, return_counts=True)
    out_idx: list[np.ndarray] = []
    out_rank: list[np.ndarray] = []
    for c0 in range(0, len(starts), chunk_users):
        st = starts[c0:c0 + chunk_users]
        ct = counts[c0:c0 + chunk_users]
        width = int(ct.max())
        n_u = len(st)
        row = np.repeat(np.arange(n_u), ct)
        flat = np.arange(st[0], st[-1] + ct[-1])
        slot = flat - np.repeat(st, ct)
        grid = np.full((n_u, width), -np.inf)
        idx = np.full((n_u, width), -1, dtype=np.int64)
        grid[row, slot] = scores[order[flat]]
        idx[row, slot] = order[flat]
        kk = min(k, width)
        if width > kk:
            part = np.argpartition(-grid, kk - 1, axis=1)[:, :kk]
            grid = np.take_along_axis(grid, part, axis=1)
            idx = np.take_along_axis(idx, part, axis=1)
        within = np.argsort(-grid, axis=1, kind="stable")
        grid = np.take_along_axis(grid, within, axis=1)
        idx = np.take_along_axis(idx, within, axis=1)
        valid = (idx >= 0) & np.isfinite(grid)
        ranks = np.cumsum(valid, axis=1)
        out_idx.append(idx[valid])
        out_rank.append(ranks[valid])
    return np.concatenate(out_idx), np.concatenate(out_rank)


# --- reasons -----------------------------------------------------------------------------------


# Sentences are pipeline wording; the only outside text in them is `{game}` (a sanitised
# `display_name`, or "game <id>") and, via `{item}`, a known region's label (`_REGION_LABELS`).
_TOURNAMENT_TEMPLATES = {
    "coplay": "{n} {players} you've played with {verb} registered",
    "skill": "{item} for your rating{skill}, {spots}",
    "affinity": "Like the {game} tournaments you play: {size}, {slot}",
    "collaborative": "Players like you signed up for this {game} tournament, "
    "{fill}/{cap} registered",
    "popularity": "Popular {item}, {fill}/{cap} registered",
}
_TEAM_TEMPLATES = {
    "coplay": "{n} {players} you've played with {verb} on this team",
    "skill": "{item} near your rating{skill}, {spots}",
    "affinity": "{item} for a game you play a lot, {spots}",
    "collaborative": "Players like you are on this {item}, {spots}",
    "popularity": "Active {item}, {fill}/{cap} members, {spots}",
}
_REASON_KINDS = ("coplay", "skill", "affinity", "collaborative", "popularity")
_REGION_LABELS = {**{r: r.upper() for r in KNOWN_REGIONS}, GLOBAL_REGION: "Global"}
GAME_NAME_MAX_CHARS = 40  # with it the longest sentence stays far below REASON_MAX_CHARS
_VALUE_BITS = 20  # a sentence key's low bits: the co-play count or the rating
_VALUE_MASK = (1 << _VALUE_BITS) - 1
_NO_RATING = _VALUE_MASK  # above any valid rating: a rating outside the contract, not shown


def _item_phrase(region: str | None, game: str, noun: str) -> str:
    # An unknown region is never copied: the item is in the user's region by eligibility.
    return f"{region} {game} {noun}" if region else f"{game} {noun} in your region"


def _item_labels(kind: str, items: pd.DataFrame) -> dict[str, list[Any]]:
    """Per candidate, the values its sentences use (as plain Python lists)."""
    is_tournament = kind == "tournaments"
    names = display_names(items["game_name"], GAME_NAME_MAX_CHARS).tolist()
    games = [n if n is not None else f"game {g}"
             for n, g in zip(names, items["game_id"].tolist(), strict=True)]
    n = len(items)
    return {
        "game": games,
        "region": [_REGION_LABELS.get(r) if isinstance(r, str) else None
                   for r in items["region"].tolist()],
        "spots": items["open_slots"].astype(np.int64).tolist(),
        "fill": items["registered" if is_tournament else "members"].astype(np.int64).tolist(),
        "cap": items["max_participants" if is_tournament else "max_members"]
        .astype(np.int64).tolist(),
        "size": items["size_class"].astype(np.int64).tolist() if is_tournament else [0] * n,
        "slot": items["start_slot"].astype(np.int64).tolist() if is_tournament else [0] * n,
    }


def build_reasons(
    kind: str,
    reason_kind: np.ndarray,
    item_idx: np.ndarray,
    coplay: np.ndarray,
    skill: np.ndarray,
    items: pd.DataFrame,
) -> np.ndarray:
    """A short sentence per recommendation, from its dominant signal.

    reason_kind: one of coplay / skill / affinity / collaborative / popularity per row; item_idx:
    row of `items`; coplay: co-players attached; skill: the user's rating for the item's game.
    A sentence depends only on (kind, item, co-play count or rating), so each DISTINCT
    combination is formatted once (an integer key, `pd.factorize`) and gathered back: no
    per-row string work at 10M rows. Names are sanitised once per distinct name. A rating
    outside the contract's 0..MAX_SKILL_RATING (or missing) is left out of the sentence.
    """
    n = len(reason_kind)
    if n == 0:
        return np.zeros(0, dtype=object)
    templates = _TOURNAMENT_TEMPLATES if kind == "tournaments" else _TEAM_TEMPLATES
    noun = "tournament" if kind == "tournaments" else "team"
    reason_kind = np.asarray(reason_kind)
    if np.issubdtype(reason_kind.dtype, np.integer):
        code = reason_kind.astype(np.int64)
    else:
        code = np.full(n, -1, dtype=np.int64)
        for c, name in enumerate(_REASON_KINDS):
            code[reason_kind == name] = c
    if ((code < 0) | (code >= len(_REASON_KINDS))).any():
        raise ValueError("unknown reason kind(s)")
    item_part = np.where(code == 0, 0, np.asarray(item_idx, dtype=np.int64) + 1)
    rating = np.asarray(skill, dtype=np.float64)
    rating = np.where((rating >= 0) & (rating <= MAX_SKILL_RATING), rating, _NO_RATING)
    value = np.where(code == 0, np.clip(np.asarray(coplay, dtype=np.int64), 0, _VALUE_MASK),
                     np.where(code == 1, rating.astype(np.int64), 0))
    key = (code << 58) | (item_part << _VALUE_BITS) | value
    codes, uniques = pd.factorize(key)
    labels = _item_labels(kind, items)
    sentences: list[str] = []
    for k in np.asarray(uniques).tolist():
        c, item, v = k >> 58, ((k >> _VALUE_BITS) & ((1 << 38) - 1)) - 1, k & _VALUE_MASK
        name = _REASON_KINDS[c]
        if name == "coplay":
            text = templates[name].format(
                n=v, players="player" if v == 1 else "players", verb="is" if v == 1 else "are")
        else:
            spots, game = labels["spots"][item], labels["game"][item]
            text = templates[name].format(
                item=_item_phrase(labels["region"][item], game, noun), game=game,
                skill="" if v == _NO_RATING else f" ({v:,})",
                spots=f"{spots} open spot" if spots == 1 else f"{spots} open spots",
                fill=labels["fill"][item], cap=labels["cap"][item],
                size=SIZE_LABELS[labels["size"][item]], slot=SLOT_LABELS[labels["slot"][item]],
            )
        sentences.append(text[:REASON_MAX_CHARS])
    return np.asarray(sentences, dtype=object)[codes]


# SIGNALS order (affinity, collaborative, coplay, skill, popularity) -> _REASON_KINDS index
_SIGNAL_TO_REASON = np.array([2, 3, 0, 1, 4], dtype=np.int8)


def _reason_kind(
    signals: np.ndarray, coplay: np.ndarray, has_history: np.ndarray, played_game: np.ndarray
) -> np.ndarray:
    """Index into `_REASON_KINDS`: co-play when there is any, otherwise the largest weighted
    contribution among the rest.

    Affinity is only a reason when the user has history in that game, "players like you" only
    when the user has any history: a cold-start user sees skill / popularity reasons.
    """
    contrib = np.array(signals, dtype=np.float32, copy=True)
    contrib[:, 2] = -1.0  # co-play handled explicitly below
    contrib[~played_game, 0] = -1.0
    contrib[~has_history, 1] = -1.0
    kind = _SIGNAL_TO_REASON[np.argmax(contrib, axis=1)]
    return np.where(np.asarray(coplay) >= 1, np.int8(0), kind).astype(np.int8)


# --- the entry point ---------------------------------------------------------------------------


def recommend(
    users: UserFeatureSet,
    tournaments: CandidateSet,
    teams: CandidateSet,
    params: ScoringParams,
    now: datetime,
    user_ids: np.ndarray | None = None,
    *,
    rerankers: Mapping[str, PairScorer] | None = None,
    model_names: Mapping[str, str] | None = None,
    collect_pools: bool = False,
    reserve: int = 0,
) -> Recommendations:
    """Score every (user, eligible candidate) pair and keep the top K per user and kind.

    `user_ids` (the bucketed refresh, the evaluation) scores only those users; everything
    learned from the whole population (priors, collaborative model, vocabularies) is unchanged,
    so a user's rows are the same as in a full run. `rerankers` (per kind) re-order each user's
    best `params.pool_size` blend candidates by a learned score (the two-stage design);
    `model_names` name the kinds' models (default "blend"; a reranker's own name wins);
    `collect_pools` returns the first stage's pool with its pair features (`pools`), for
    training and evaluation; `reserve` also returns each user's next `reserve` rows after the
    top K (`reserves`), ranked by the same model.
    """
    # Single-threaded BLAS: the matrices per batch are small, and oversubscribed OpenBLAS
    # threads on a shared 2-core machine are far slower than one.
    with threadpool_limits(limits=1):
        return _recommend(users, tournaments, teams, params, now, user_ids,
                          dict(rerankers or {}), dict(model_names or {}), collect_pools,
                          reserve)


@dataclass
class _InteractionSpace:
    """Who did what, as sparse matrices over fixed vocabularies of users, tournaments and teams.

    `x_*` are the history (user_vocab x every tournament / team seen), `r_*` who is already
    registered / a member of each candidate (user_vocab x candidates), `*_cols` the candidates'
    columns in the history vocabularies.
    """

    features: pd.DataFrame  # the scored users' feature rows, by user_id
    user_vocab: np.ndarray  # every user id in the matrices, sorted
    scored_ids: np.ndarray
    scored_rows: np.ndarray  # the scored users' rows in user_vocab
    tournament_attributes: pd.DataFrame
    team_attributes: pd.DataFrame
    x_tournaments: sp.csr_matrix
    x_teams: sp.csr_matrix
    registrants: sp.csr_matrix
    members: sp.csr_matrix
    tournament_cols: np.ndarray
    team_cols: np.ndarray


def _interaction_space(
    users: UserFeatureSet,
    tournaments: CandidateSet,
    teams: CandidateSet,
    user_ids: np.ndarray | None,
) -> _InteractionSpace:
    features = users.features.sort_values("user_id").reset_index(drop=True)
    all_ids = features["user_id"].to_numpy(dtype=np.int64)
    if user_ids is not None:
        features = features[np.isin(all_ids, np.asarray(user_ids, dtype=np.int64))]
        features = features.reset_index(drop=True)
    scored_ids = features["user_id"].to_numpy(dtype=np.int64)
    t_items, m_items = tournaments.items, teams.items
    user_vocab = np.unique(np.concatenate([
        all_ids,
        users.tournament_history["user_id"].to_numpy(dtype=np.int64),
        users.team_history["user_id"].to_numpy(dtype=np.int64),
        tournaments.members["user_id"].to_numpy(dtype=np.int64),
        teams.members["user_id"].to_numpy(dtype=np.int64),
    ]))
    scored_rows, _ = _positions(user_vocab, scored_ids)

    # Vocabularies of every tournament / team (history and candidates), with attributes.
    t_attr_cols = ["tournament_id", "game_id", "region", "status", "size_class", "start_slot",
                   "band_class", "start_hour", "name"]
    t_attr = pd.concat(
        [t_items[t_attr_cols], users.tournaments[t_attr_cols]], ignore_index=True
    ).drop_duplicates("tournament_id").sort_values("tournament_id")
    m_attr = pd.concat(
        [m_items[["team_id", "game_id", "region"]], users.teams[["team_id", "game_id", "region"]]],
        ignore_index=True,
    ).drop_duplicates("team_id").sort_values("team_id")
    t_vocab = t_attr["tournament_id"].to_numpy(dtype=np.int64)
    m_vocab = m_attr["team_id"].to_numpy(dtype=np.int64)
    t_cols, _ = _positions(t_vocab, t_items["tournament_id"].to_numpy())
    m_cols, _ = _positions(m_vocab, m_items["team_id"].to_numpy())
    return _InteractionSpace(
        features=features,
        user_vocab=user_vocab,
        scored_ids=scored_ids,
        scored_rows=scored_rows,
        tournament_attributes=t_attr,
        team_attributes=m_attr,
        x_tournaments=_pair_matrix(
            users.tournament_history, "user_id", "tournament_id", user_vocab, t_vocab),
        x_teams=_pair_matrix(users.team_history, "user_id", "team_id", user_vocab, m_vocab),
        registrants=_pair_matrix(
            tournaments.members, "user_id", "item_id", user_vocab,
            t_items["tournament_id"].to_numpy(dtype=np.int64),
        ),
        members=_pair_matrix(
            teams.members, "user_id", "item_id", user_vocab,
            m_items["team_id"].to_numpy(dtype=np.int64),
        ),
        tournament_cols=t_cols,
        team_cols=m_cols,
    )


@dataclass
class _Affinities:
    """The scored users' attribute affinities, and which games they have played."""

    tournament_terms: list[tuple[np.ndarray, np.ndarray]]  # (users x values, candidate codes)
    team_terms: list[tuple[np.ndarray, np.ndarray]]
    played_tournament_game: np.ndarray  # (scored users x games) bool
    played_any_game: np.ndarray
    tournament_game_code: np.ndarray  # (candidates,) game code of each candidate
    team_game_code: np.ndarray
    has_history: np.ndarray  # (scored users,) bool


def _affinities(space: _InteractionSpace, params: ScoringParams) -> _Affinities:
    """Affinity counts: history x one-hot attribute codes, for the scored users only."""
    t_attr, m_attr = space.tournament_attributes, space.team_attributes
    x_t, x_m = space.x_tournaments, space.x_teams
    t_cols, m_cols = space.tournament_cols, space.team_cols
    games = np.unique(np.concatenate([t_attr["game_id"].to_numpy(dtype=np.int64),
                                      m_attr["game_id"].to_numpy(dtype=np.int64)]))
    t_game_code, _ = _positions(games, t_attr["game_id"].to_numpy())
    m_game_code, _ = _positions(games, m_attr["game_id"].to_numpy())
    region_codes, region_values = pd.factorize(t_attr["region"].astype(str), sort=True)
    t_families = {
        "game": (t_game_code, len(games)),
        "region": (region_codes, len(region_values)),
        "size": (t_attr["size_class"].to_numpy(dtype=np.int64), len(SIZE_LABELS)),
        "slot": (t_attr["start_slot"].to_numpy(dtype=np.int64), len(SLOT_LABELS)),
        "band": (t_attr["band_class"].to_numpy(dtype=np.int64), 5),
    }
    x_t_scored = x_t[space.scored_rows]
    x_m_scored = x_m[space.scored_rows]
    t_terms: list[tuple[np.ndarray, np.ndarray]] = []
    for codes, n_values in t_families.values():
        onehot = _one_hot(codes, n_values)
        prior_counts = np.asarray((x_t @ onehot).sum(axis=0)).ravel()
        prior = prior_counts / prior_counts.sum() if prior_counts.sum() > 0 else None
        matrix = smoothed_affinity(x_t_scored @ onehot, smoothing=params.smoothing, prior=prior)
        t_terms.append((matrix, codes[t_cols] if len(t_cols) else codes[:0]))
    t_games, m_games = _one_hot(t_game_code, len(games)), _one_hot(m_game_code, len(games))
    game_prior = np.asarray((x_t @ t_games + x_m @ m_games).sum(axis=0)).ravel()
    game_aff = smoothed_affinity(
        x_t_scored @ t_games + x_m_scored @ m_games,
        smoothing=params.smoothing,
        prior=game_prior / game_prior.sum() if game_prior.sum() > 0 else None,
    )
    played_t = (x_t_scored @ t_games).toarray() > 0
    return _Affinities(
        tournament_terms=t_terms,
        team_terms=[(game_aff, m_game_code[m_cols] if len(m_cols) else m_game_code[:0])],
        played_tournament_game=played_t,
        played_any_game=played_t | ((x_m_scored @ m_games).toarray() > 0),
        tournament_game_code=t_game_code[t_cols] if len(t_cols) else t_game_code[:0],
        team_game_code=m_game_code[m_cols] if len(m_cols) else m_game_code[:0],
        has_history=(x_t_scored.getnnz(axis=1) + x_m_scored.getnnz(axis=1)) > 0,
    )


@dataclass
class _Embeddings:
    """Collaborative model on all interactions; candidates embedded from their members."""

    model: CollaborativeModel
    user_factors: np.ndarray  # unit rows
    tournaments: np.ndarray  # (candidates x d) unit rows
    teams: np.ndarray
    raw_tournaments: np.ndarray  # the same before normalisation
    raw_teams: np.ndarray


def _embeddings(space: _InteractionSpace, params: ScoringParams) -> _Embeddings:
    model = fit_collaborative(sp.hstack([space.x_tournaments, space.x_teams], format="csr"),
                              params.collaborative)
    raw_tournaments = model.embed_items(sp.csr_matrix(space.registrants.T))
    raw_teams = model.embed_items(sp.csr_matrix(space.members.T))
    return _Embeddings(
        model=model,
        user_factors=_unit_rows(model.user_factors),
        tournaments=_unit_rows(raw_tournaments),
        teams=_unit_rows(raw_teams),
        raw_tournaments=np.asarray(raw_tournaments, dtype=np.float32),
        raw_teams=np.asarray(raw_teams, dtype=np.float32),
    )


def _no_embeddings(space: _InteractionSpace, params: ScoringParams) -> _Embeddings:
    """Zero-width embeddings: what a ranking without the collaborative signal needs."""
    model = CollaborativeModel(np.zeros((len(space.user_vocab), 0), np.float32),
                               params.collaborative)
    none_t = np.zeros((space.registrants.shape[1], 0), np.float32)
    none_m = np.zeros((space.members.shape[1], 0), np.float32)
    return _Embeddings(model, model.user_factors, none_t, none_m, none_t, none_m)


def _unit_sparse_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix)


def _second_stage_signals(
    space: _InteractionSpace,
    users: UserFeatureSet,
    tournaments: CandidateSet,
    teams: CandidateSet,
    embeddings: _Embeddings,
    params: ScoringParams,
) -> tuple[UserSignals, ItemSignals, ItemSignals]:
    """What the pair features read besides the blend's parts (`compute.reranking`)."""
    t_attr = space.tournament_attributes
    x_t, x_m = space.x_tournaments, space.x_teams
    x_t_scored, x_m_scored = x_t[space.scored_rows], x_m[space.scored_rows]
    t_cols = space.tournament_cols

    series = series_key(t_attr["name"].to_numpy(dtype=object))
    series_code, organiser_code = key_codes(series, organiser_key(series))

    def counts_by(codes: np.ndarray) -> sp.csr_matrix:
        known = codes >= 0
        n_codes = int(codes.max()) + 1 if known.any() else 0
        onehot = _binary_matrix(np.flatnonzero(known), codes[known], (len(codes), n_codes))
        return sp.csr_matrix(x_t_scored @ onehot)

    (vectors,) = name_vectors(t_attr["name"])
    hours = t_attr["start_hour"].to_numpy(dtype=np.int64)
    hour_onehot = _one_hot(hour_bin(hours), HOUR_BINS)
    prior = np.asarray((x_t @ hour_onehot).sum(axis=0)).ravel()
    hour_affinity = smoothed_affinity(x_t_scored @ hour_onehot, smoothing=params.smoothing,
                                      prior=prior / prior.sum() if prior.sum() > 0 else None)
    # The platform's registrations by local start hour: each user's own UTC offset.
    region_of = pd.Series(users.features["region"].astype(str).to_numpy(),
                          index=users.features["user_id"].to_numpy())
    vocab_offset = utc_offsets(region_of.reindex(space.user_vocab).to_numpy(dtype=object))
    known_user = region_of.reindex(space.user_vocab).notna().to_numpy()
    history = x_t.tocoo()
    keep = known_user[history.row]
    local = hour_bin((hours[history.col[keep]] + vocab_offset[history.row[keep]]) % 24)
    local_counts = np.bincount(local, minlength=HOUR_BINS).astype(np.float32)
    user_signals = UserSignals(
        series_counts=counts_by(series_code),
        organiser_counts=counts_by(organiser_code),
        past_tournaments=x_t_scored.getnnz(axis=1).astype(np.float32),
        history=(x_t_scored.getnnz(axis=1) + x_m_scored.getnnz(axis=1)).astype(np.float32),
        name_profile=_unit_sparse_rows(sp.csr_matrix(x_t_scored @ vectors)),
        hour_affinity=hour_affinity,
        utc_offset=utc_offsets(space.features["region"].astype(str).to_numpy(dtype=object)),
        local_hour_prior=local_counts / local_counts.max() if local_counts.max() > 0
        else local_counts,
        factors=np.asarray(embeddings.model.user_factors, dtype=np.float32),
    )
    t_items, m_items = tournaments.items, teams.items
    n_teams = len(m_items)
    tournament_signals = ItemSignals(
        count=t_items["registered"].to_numpy(dtype=np.float64),
        listed_days=t_items["listed_days"].to_numpy(dtype=np.float64),
        hours_to_close=t_items["hours_to_close"].to_numpy(dtype=np.float64),
        utc_hour=t_items["start_hour"].to_numpy(dtype=np.int64),
        series=series_code[t_cols] if len(t_cols) else series_code[:0],
        organiser=organiser_code[t_cols] if len(t_cols) else organiser_code[:0],
        name_vectors=sp.csr_matrix(vectors[t_cols]) if len(t_cols)
        else sp.csr_matrix((0, vectors.shape[1]), dtype=np.float32),
        embedding=embeddings.raw_tournaments,
    )
    team_signals = ItemSignals(
        count=m_items["members"].to_numpy(dtype=np.float64),
        listed_days=m_items["listed_days"].to_numpy(dtype=np.float64),
        hours_to_close=np.full(n_teams, np.nan),
        utc_hour=np.full(n_teams, -1, dtype=np.int64),
        series=np.full(n_teams, -1, dtype=np.int64),
        organiser=np.full(n_teams, -1, dtype=np.int64),
        name_vectors=sp.csr_matrix((n_teams, 0), dtype=np.float32),
        embedding=embeddings.raw_teams,
    )
    return user_signals, tournament_signals, team_signals


def _coplay(
    space: _InteractionSpace, params: ScoringParams
) -> tuple[sp.csr_matrix, sp.csr_matrix, int]:
    """Co-play counts per (scored user, candidate) of each kind, and the number of contexts.

    Contexts are finished/running tournaments and teams of a human size.
    """
    x_t, x_m = space.x_tournaments, space.x_teams
    t_status_ok = space.tournament_attributes["status"].isin(CONTEXT_STATUSES).to_numpy()
    t_small = np.asarray(x_t.getnnz(axis=0)) <= params.max_context_size
    m_small = np.asarray(x_m.getnnz(axis=0)) <= params.max_context_size
    contexts = sp.hstack(
        [x_t[:, np.flatnonzero(t_status_ok & t_small)], x_m[:, np.flatnonzero(m_small)]],
        format="csr",
    )
    t_coplay, m_coplay = coplay_counts(contexts, [space.registrants, space.members],
                                       space.scored_rows, params.max_batch_cells)
    return t_coplay, m_coplay, int(contexts.shape[1])


def _recommend(
    users: UserFeatureSet,
    tournaments: CandidateSet,
    teams: CandidateSet,
    params: ScoringParams,
    now: datetime,
    user_ids: np.ndarray | None,
    rerankers: dict[str, PairScorer],
    model_names: dict[str, str],
    collect_pools: bool,
    reserve: int,
) -> Recommendations:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    space = _interaction_space(users, tournaments, teams, user_ids)
    affinities = _affinities(space, params)
    timings["features"] = time.perf_counter() - t0

    # A ranking that reads neither signal (popularity, random) skips the two costliest steps.
    weights = np.vstack([params.tournament_weights.vector(), params.team_weights.vector()])
    second_stage = bool(rerankers) or collect_pools
    t0 = time.perf_counter()
    if second_stage or weights[:, 1].any():
        embeddings = _embeddings(space, params)
    else:
        embeddings = _no_embeddings(space, params)
    timings["collaborative"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if second_stage or weights[:, 2].any():
        t_coplay, m_coplay, n_contexts = _coplay(space, params)
    else:
        n_scored = len(space.scored_rows)
        t_coplay = sp.csr_matrix((n_scored, len(tournaments.items)), dtype=np.float32)
        m_coplay = sp.csr_matrix((n_scored, len(teams.items)), dtype=np.float32)
        n_contexts = 0
    timings["coplay"] = time.perf_counter() - t0

    user_signals, t_signals, m_signals = None, None, None
    if rerankers or collect_pools:
        t0 = time.perf_counter()
        user_signals, t_signals, m_signals = _second_stage_signals(
            space, users, tournaments, teams, embeddings, params)
        timings["pair_signals"] = time.perf_counter() - t0

    # Score each kind by (game, region) group.
    t0 = time.perf_counter()
    prof = users.profiles
    p_pos, p_found = _positions(space.scored_ids, prof["user_id"].to_numpy())
    user_regions = space.features["region"].astype(str).to_numpy(dtype=object)
    outputs: dict[str, pd.DataFrame] = {}
    covered: dict[str, int] = {}
    versions: dict[str, str] = {}
    pools: dict[str, CandidatePool] = {}
    reserves: dict[str, pd.DataFrame] = {}
    for inp in (
        _KindInputs("tournaments", tournaments.items, space.registrants,
                    embeddings.tournaments, t_coplay, affinities.tournament_terms,
                    params.tournament_weights.vector(), True,
                    affinities.played_tournament_game, affinities.tournament_game_code,
                    t_signals, rerankers.get("tournaments")),
        _KindInputs("teams", teams.items, space.members, embeddings.teams, m_coplay,
                    affinities.team_terms, params.team_weights.vector(), False,
                    affinities.played_any_game, affinities.team_game_code,
                    m_signals, rerankers.get("teams")),
    ):
        if inp.scorer is not None:
            version = params.model_version(inp.scorer.name, inp.scorer.fingerprint())
        else:
            version = params.model_version(model_names.get(inp.kind, "blend"))
        versions[inp.kind] = version
        picked = _score_kind(
            inp, scored_rows=space.scored_rows, user_regions=user_regions,
            profile_pos=p_pos[p_found],
            profile_game=prof["game_id"].to_numpy(dtype=np.int64)[p_found],
            profile_skill=prof["skill_rating"].to_numpy(dtype=np.float64)[p_found],
            user_factors=embeddings.user_factors, has_history=affinities.has_history,
            params=params, user_signals=user_signals, collect=collect_pools, reserve=reserve,
        )
        if collect_pools:
            pools[inp.kind] = _pool(inp.kind, picked, inp.items, space.scored_ids)
        covered[inp.kind] = (
            len(np.unique(np.concatenate(picked.users_with_candidates)))
            if picked.users_with_candidates else 0
        )
        outputs[inp.kind], spare = _assemble(inp.kind, picked, inp.items, space.scored_ids,
                                             affinities.has_history, params, version, now,
                                             reserve)
        if reserve:
            reserves[inp.kind] = spare
    timings["score"] = time.perf_counter() - t0
    return Recommendations(
        tournaments=outputs["tournaments"],
        teams=outputs["teams"],
        model_version="+".join(dict.fromkeys(versions.values())),
        model_versions=versions,
        pools=pools,
        reserves=reserves,
        timings=timings,
        users_with_candidates=covered,
        stats={
            "users_scored": len(space.scored_ids),
            "users_with_history": int(affinities.has_history.sum()),
            "collaborative_factors": embeddings.model.n_factors,
            "coplay_contexts": n_contexts,
            "tournament_candidates": len(tournaments.items),
            "team_candidates": len(teams.items),
        },
    )


def _pool(kind: str, picked: _Picked, items: pd.DataFrame,
          scored_ids: np.ndarray) -> CandidatePool:
    if not picked.pool_user_pos:
        return CandidatePool.empty()
    item_ids = items["tournament_id" if kind == "tournaments" else "team_id"].to_numpy(np.int64)
    return CandidatePool(
        user_id=scored_ids[np.concatenate(picked.pool_user_pos)],
        item_id=item_ids[np.concatenate(picked.pool_item_idx)],
        features=np.vstack(picked.pool_features),
    )


def _assemble(
    kind: str,
    picked: _Picked,
    items: pd.DataFrame,
    scored_ids: np.ndarray,
    has_history: np.ndarray,
    params: ScoringParams,
    version: str,
    now: datetime,
    reserve: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's top K rows and, after them, the next `reserve` rows (ranks K+1..), as two
    frames built straight from the picked arrays (at 1M users a combined frame split in two
    would hold ~0.8 GB more per kind). Consumes `picked`'s rows."""
    item_column = "tournament_id" if kind == "tournaments" else "team_id"
    if not picked.user_pos:
        return empty_recommendations(item_column), empty_recommendations(item_column)
    user_pos, item_idx, blend, reason, coplay, skill = picked.consume_rows()
    keep, ranks = top_k_per_user(user_pos, blend, params.top_k + reserve)
    item_ids = items[item_column].to_numpy(dtype=np.int64)
    stamp = pd.Timestamp(now).as_unit("us")

    def frame(rows: np.ndarray) -> pd.DataFrame:
        at = keep[rows]
        return pd.DataFrame({
            "user_id": scored_ids[user_pos[at]],
            item_column: item_ids[item_idx[at]],
            "rank": ranks[rows].astype(np.int64),
            "score": 0.01 + 0.99 * np.clip(blend[at].astype(np.float64), 0.0, 1.0),
            "reason": build_reasons(kind, reason[at], item_idx[at], coplay[at], skill[at],
                                    items),
            "model_version": version,
            "generated_at": stamp,
        }, copy=False)  # the columns are fresh arrays: no second copy of 10M rows

    if not reserve:
        return frame(np.arange(len(keep))), empty_recommendations(item_column)
    in_top = ranks <= params.top_k
    return frame(np.flatnonzero(in_top)), frame(np.flatnonzero(~in_top))


def empty_recommendations(item_column: str) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": pd.Series(dtype=np.int64),
        item_column: pd.Series(dtype=np.int64),
        "rank": pd.Series(dtype=np.int64),
        "score": pd.Series(dtype=np.float64),
        "reason": pd.Series(dtype=str),
        "model_version": pd.Series(dtype=str),
        "generated_at": pd.Series(dtype="datetime64[us]"),
    })
