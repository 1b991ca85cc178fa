"""A fitted `HistGradientBoostingClassifier` as lookup tables: the same probabilities, ~10x faster.

The nightly scores every user's pool (tens of millions of rows at 1M users) with the learned
ranker. scikit-learn's `predict_proba` walks each tree per row (~2.7 us per row for 60 trees,
one thread, measured in docs/performance.md); the ranker's trees are tiny (4 leaves), so the
ensemble is rewritten once after the fit:

1. every split compares one column with one threshold, so per column only the sorted distinct
   thresholds of all splits on it matter: a value's *bin* (how many of them lie below it, NaN
   its own bin) decides every split on that column;
2. each tree reads at most 3 columns, so its leaf is a function of at most 3 bins: a small
   table. Trees over the same columns (and groups of columns whose joint table stays below
   `MAX_TABLE_CELLS`) are summed into one table;
3. the raw score is the baseline plus one table lookup per table, the probability its logistic.

This reads the fitted trees from the model's `_predictors` (private to scikit-learn, unchanged
since 0.21); `compile_trees` refuses what it does not understand (categorical splits, more than
one tree per iteration, a tree whose table would exceed `MAX_TREE_CELLS`: deep trees on many
columns) and the tests compare it with `predict_proba` on every fitted model
shape the ranker produces, so an upgrade that changes the layout fails there first.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier

MAX_TABLE_CELLS = 1 << 16  # 512 KiB of float64: groups of trees merge up to this size
MAX_TREE_CELLS = 1 << 20  # one tree's own table may be larger, up to 8 MiB; beyond: refused


@dataclass(frozen=True)
class _Table:
    columns: tuple[int, ...]  # positions in CompiledTrees.columns
    # per column, the table offset of each of its bins: local bin x stride (the table's trees
    # split on a subset of the column's thresholds, so several bins share a local bin)
    offsets: tuple[np.ndarray, ...]
    values: np.ndarray  # flat float64, indexed by the sum of the columns' offsets


@dataclass(frozen=True)
class CompiledTrees:
    """The ensemble of a fitted binary `HistGradientBoostingClassifier` (see module docstring)."""

    baseline: float
    columns: np.ndarray  # the input columns any split reads
    thresholds: tuple[np.ndarray, ...]  # per such column, its splits' sorted distinct thresholds
    tables: tuple[_Table, ...]

    def _bins(self, x: np.ndarray) -> list[np.ndarray]:
        bins = []
        for column, thresholds in zip(self.columns.tolist(), self.thresholds, strict=True):
            # float64 like scikit-learn's own comparison: a float32 value is compared exactly
            values = x[:, column].astype(np.float64)
            b = np.searchsorted(thresholds, values, side="left").astype(np.int32)
            b[np.isnan(values)] = len(thresholds) + 1
            bins.append(b)
        return bins

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """The raw score (log-odds) per row of `x` (the model's input columns)."""
        raw = np.full(len(x), self.baseline, dtype=np.float64)
        if len(x) == 0:
            return raw
        bins = self._bins(x)
        for table in self.tables:
            index = table.offsets[0][bins[table.columns[0]]]
            for column, offsets in zip(table.columns[1:], table.offsets[1:], strict=True):
                index += offsets[bins[column]]
            raw += table.values[index]
        return raw

    def predict_proba_positive(self, x: np.ndarray) -> np.ndarray:
        """What `predict_proba(x)[:, 1]` returns."""
        return expit(self.decision_function(x))


def _split_thresholds(trees: list[np.ndarray], column: int) -> np.ndarray:
    """Sorted distinct thresholds of the splits of `trees` on input `column`."""
    found = [n["num_threshold"][(n["is_leaf"] == 0) & (n["feature_idx"] == column)]
             for n in trees]
    return np.unique(np.concatenate(found)).astype(np.float64)


def _local_bins(global_thresholds: np.ndarray, local: np.ndarray) -> np.ndarray:
    """For each global bin (0..G, NaN = G + 1), the bin among the `local` thresholds (a subset):
    how many of them lie below the values of that global bin."""
    below = np.r_[0, np.searchsorted(local, global_thresholds, side="right")]
    return np.r_[below, len(local) + 1].astype(np.int64)


def _tree_on_grid(nodes: np.ndarray, grid: np.ndarray, position: dict[int, int],
                  thresholds: tuple[np.ndarray, ...]) -> np.ndarray:
    """The leaf value of one tree for every row of `grid` (local bins of the table's columns)."""
    node = np.zeros(len(grid), dtype=np.int64)
    while True:
        inner = np.flatnonzero(nodes["is_leaf"][node] == 0)
        if len(inner) == 0:
            return nodes["value"][node].astype(np.float64)
        at = node[inner]
        go_left = np.empty(len(at), dtype=bool)
        for n in np.unique(at).tolist():
            rows = at == n
            col = position[int(nodes["feature_idx"][n])]
            thr = thresholds[col]
            k = int(np.searchsorted(thr, nodes["num_threshold"][n]))
            b = grid[inner[rows], col]
            go_left[rows] = np.where(b == len(thr) + 1, bool(nodes["missing_go_to_left"][n]),
                                     b <= k)
        node[inner] = np.where(go_left, nodes["left"][at], nodes["right"][at])


def _cells(trees: list[np.ndarray], columns: set[int]) -> int:
    return int(np.prod([len(_split_thresholds(trees, c)) + 2 for c in columns]))


def compile_trees(model: HistGradientBoostingClassifier) -> CompiledTrees:
    """Rewrite a fitted binary classifier's trees as lookup tables (module docstring)."""
    predictors = model._predictors
    if any(len(per_iteration) != 1 for per_iteration in predictors):
        raise ValueError("only binary classifiers (one tree per iteration) can be compiled")
    trees = [per_iteration[0].nodes for per_iteration in predictors]
    if any((nodes["is_categorical"] & (nodes["is_leaf"] == 0)).any() for nodes in trees):
        raise ValueError("categorical splits cannot be compiled")
    baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
    # Group the trees by the input columns they read; a tree without a split is a constant.
    groups: dict[tuple[int, ...], list[np.ndarray]] = {}
    for nodes in trees:
        read = nodes["feature_idx"][nodes["is_leaf"] == 0]
        if len(read) == 0:
            baseline += float(nodes["value"][0])
            continue
        groups.setdefault(tuple(sorted(set(read.tolist()))), []).append(nodes)
    for key, members in groups.items():
        if _cells(members, set(key)) > MAX_TREE_CELLS:
            raise ValueError(f"trees reading {len(key)} columns: their table would exceed "
                             f"{MAX_TREE_CELLS:,} cells")
    # Merge groups, largest first, while the joint table stays below MAX_TABLE_CELLS.
    merged: list[tuple[set[int], list[np.ndarray]]] = []
    for key in sorted(groups, key=lambda k: -_cells(groups[k], set(k))):
        for read, members in merged:
            if _cells(members + groups[key], read | set(key)) <= MAX_TABLE_CELLS:
                read |= set(key)
                members.extend(groups[key])
                break
        else:
            merged.append((set(key), list(groups[key])))

    columns = np.array(sorted({c for read, _ in merged for c in read}), dtype=np.int64)
    position = {int(c): i for i, c in enumerate(columns.tolist())}
    thresholds = tuple(_split_thresholds(trees, int(c)) for c in columns.tolist())
    tables = []
    for read, members in merged:
        cols = sorted(read)
        local = tuple(_split_thresholds(members, c) for c in cols)
        sizes = [len(t) + 2 for t in local]  # below, between and above the thresholds; NaN
        grid = np.array(list(itertools.product(*[range(n) for n in sizes])), dtype=np.int64)
        values = np.zeros(len(grid), dtype=np.float64)
        for nodes in members:
            values += _tree_on_grid(nodes, grid, {c: i for i, c in enumerate(cols)}, local)
        strides = [int(np.prod(sizes[i + 1:])) for i in range(len(cols))]
        offsets = tuple(_local_bins(thresholds[position[c]], loc) * stride
                        for c, loc, stride in zip(cols, local, strides, strict=True))
        tables.append(_Table(columns=tuple(position[c] for c in cols), offsets=offsets,
                             values=values))
    return CompiledTrees(baseline=baseline, columns=columns, thresholds=thresholds,
                         tables=tuple(tables))
