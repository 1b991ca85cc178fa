"""Which database errors are worth a retry, and the retry policies every job uses.

Transient: the database is unreachable or restarting (`DatabaseUnavailableError`, raised when the
engine's first connection fails), a connection dropped mid-run (`connection_invalidated`), and any
`OperationalError` (deadlock, serialization failure, lock timeout, SQLite's "database is
locked"). Everything else (a constraint violation, a bad URL, a bug) fails at once, without
retries, so a run never spends minutes retrying what cannot succeed.

The policies back off exponentially **without jitter**: Dagster's `Jitter.PLUS_MINUS` moves each
delay by up to +- the base delay, so the first retry could fire almost at once, into the same
outage; the delays here are exactly base x 1, 3, 7, 15, ... Runs fail (and the failure alert
fires) only when the last retry failed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dagster as dg
import sqlalchemy as sa

from recs_pipeline.db import DatabaseUnavailableError


def is_transient_db_error(exc: BaseException) -> bool:
    """True for errors a later attempt can get past (see the module docstring)."""
    if isinstance(exc, DatabaseUnavailableError):
        return True
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa.exc.OperationalError)


@contextmanager
def transient_errors_retry() -> Iterator[None]:
    """Let transient errors reach the op's RetryPolicy; fail anything else without retries."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        if is_transient_db_error(exc):
            raise
        first_line = (str(exc).splitlines() or [""])[0][:300]
        raise dg.Failure(description=f"{type(exc).__name__}: {first_line}",
                         allow_retries=False) from exc


F = TypeVar("F", bound=Callable[..., Any])
TRANSIENT_ONLY_ATTR = "recs_transient_only"


def transient_only(fn: F) -> F:
    """Decorate an op's or asset's body (under `@dg.op` / `@dg.asset`): only transient errors
    reach its RetryPolicy, anything else fails the step at once (`transient_errors_retry`).
    Every op or asset that has a retry policy wears it (a test checks)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator_body(*args: Any, **kwargs: Any) -> Any:
            with transient_errors_retry():
                yield from fn(*args, **kwargs)
        wrapped: Any = generator_body
    else:
        @functools.wraps(fn)
        def body(*args: Any, **kwargs: Any) -> Any:
            with transient_errors_retry():
                return fn(*args, **kwargs)
        wrapped = body
    setattr(wrapped, TRANSIENT_ONLY_ATTR, True)
    return wrapped


def transient_retry_policy(max_retries: int, delay: float) -> dg.RetryPolicy:
    """Exponential backoff from `delay` seconds, no jitter: retries wait delay x (2^n - 1)."""
    return dg.RetryPolicy(max_retries=max_retries, delay=delay, backoff=dg.Backoff.EXPONENTIAL)


def ride_out_seconds(policy: dg.RetryPolicy) -> float:
    """How long an outage the policy's retries span (sum of every retry's delay)."""
    return sum(policy.calculate_delay(n) for n in range(1, policy.max_retries + 1))
