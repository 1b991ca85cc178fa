"""User hash buckets for the bucketed (scale-out) nightly refresh.

A user's bucket is `crc32(str(user_id)) % n_buckets`: stable across processes, machines and
Python versions (Python's `hash()` is salted per process for strings and must never be used).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

NUM_BUCKETS = 8


def bucket_key(index: int) -> str:
    """The partition key of bucket `index`, e.g. `bucket_03`."""
    return f"bucket_{index:02d}"


def bucket_index(key: str) -> int:
    """Inverse of `bucket_key`; a clear error for anything else."""
    prefix = "bucket_"
    if not key.startswith(prefix) or not key[len(prefix):].isdigit():
        raise ValueError(f"not a bucket partition key: {key!r}")
    return int(key[len(prefix):])


def user_buckets(user_ids: Iterable[int], n_buckets: int = NUM_BUCKETS) -> np.ndarray:
    """Bucket index of each user id (crc32 of its decimal text, modulo n_buckets)."""
    if n_buckets < 1:
        raise ValueError("n_buckets must be >= 1")
    return np.fromiter(
        (zlib.crc32(str(int(u)).encode("ascii")) % n_buckets for u in user_ids), dtype=np.int64
    )
