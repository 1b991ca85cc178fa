"""Which errors are retried, and how: connection failures are transient everywhere, retries never
fire into the first seconds of an outage, every job's runs are bounded by `dagster/max_runtime`."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from recs_pipeline.db import DatabaseConfigError, DatabaseUnavailableError, make_engine
from recs_pipeline.definitions import defs
from recs_pipeline.defs.achievements.job import load_events
from recs_pipeline.resources import AppDatabase
from recs_pipeline.retries import (
    TRANSIENT_ONLY_ATTR,
    is_transient_db_error,
    ride_out_seconds,
    transient_errors_retry,
    transient_only,
    transient_retry_policy,
)
from recs_pipeline.tags import MAX_RUNTIME_TAG
from recs_pipeline_tests.conftest import POSTGRES_HOST

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1


def test_a_server_that_is_down_is_transient_bad_credentials_are_not(
    postgres_database: str,
) -> None:
    with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
        make_engine(UNREACHABLE_PG)
    with pytest.raises(DatabaseConfigError) as missing:  # no such database: waiting won't help
        make_engine(f"postgresql://postgres@{POSTGRES_HOST}/no_such_database_here")
    assert not isinstance(missing.value, DatabaseUnavailableError)
    assert is_transient_db_error(DatabaseUnavailableError("down"))
    assert not is_transient_db_error(missing.value)
    assert is_transient_db_error(sa.exc.OperationalError("x", {}, Exception("restarting")))
    assert not is_transient_db_error(sa.exc.IntegrityError("x", {}, Exception("dup")))


def test_a_run_launched_while_the_database_is_down_retries_instead_of_failing() -> None:
    """The achievements op raises the transient error itself (its RetryPolicy retries it); a
    permanent one becomes a Failure that forbids retries."""
    with dg.build_op_context(resources={"app_db": AppDatabase(url=UNREACHABLE_PG)},
                             op_config={"event_id_ranges": [[1, 10]]}) as context, \
            pytest.raises(DatabaseUnavailableError):
        load_events(context)
    with pytest.raises(dg.Failure) as failure, transient_errors_retry():
        raise sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert failure.value.allow_retries is False


def _retry_policies() -> dict[str, dg.RetryPolicy]:
    policies: dict[str, dg.RetryPolicy] = {}
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        for node in job.graph.iterate_op_defs():
            policy = node.retry_policy or job.op_retry_policy
            if policy is not None:
                policies[f"{job.name}/{node.name}"] = policy
    return policies


def test_no_retry_fires_sooner_than_its_base_delay() -> None:
    policies = _retry_policies()
    assert {"achievements_job/load_events", "retention_purge_job/purge_expired_data",
            "nightly_recommendations_job/publish_recommendations"} <= set(policies)
    for name, policy in policies.items():
        assert policy.jitter is None, name
        delays = [policy.calculate_delay(n) for n in range(1, policy.max_retries + 1)]
        assert delays[0] >= policy.delay, name
        assert delays == sorted(delays), name
    assert ride_out_seconds(transient_retry_policy(4, 5.0)) == 5 + 15 + 35 + 75


def test_every_job_bounds_its_runs_with_max_runtime() -> None:
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        assert int(job.tags[MAX_RUNTIME_TAG]) > 0, job.name


def test_every_op_with_a_retry_policy_retries_transient_errors_only() -> None:
    """An op or asset with a retry policy wears `@transient_only`, so a bug or a constraint
    violation fails the step at once instead of being retried for minutes."""
    unguarded = []
    for job in defs.resolve_all_job_defs():
        for node in job.graph.iterate_op_defs():
            if (node.retry_policy or job.op_retry_policy) is not None and not getattr(
                    node.compute_fn.decorated_fn, TRANSIENT_ONLY_ATTR, False):
                unguarded.append(f"{job.name}/{node.name}")
    assert unguarded == []
    assert len(_retry_policies()) >= 10


_ATTEMPTS: list[int] = []


def _flaky_job(transient: bool) -> dg.JobDefinition:
    """A job whose op fails its first attempt with an outage (transient) or a constraint error."""

    @dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=0.01))
    @transient_only
    def flaky(context) -> int:  # type: ignore[no-untyped-def]
        _ATTEMPTS.append(context.retry_number)
        if context.retry_number == 0:
            raise (sa.exc.OperationalError("SELECT 1", {}, Exception("server closed"))
                   if transient else sa.exc.IntegrityError("INSERT", {}, Exception("dup")))
        return context.retry_number

    @dg.job
    def flaky_job() -> None:
        flaky()

    return flaky_job


@dg.asset(retry_policy=dg.RetryPolicy(max_retries=2, delay=0.01))
@transient_only
def _generator_asset():  # type: ignore[no-untyped-def]
    _ATTEMPTS.append(len(_ATTEMPTS))
    raise ValueError("a bug, not an outage")
    yield dg.Output(1)  # a generator body, as the nightly assets are


def _retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


@pytest.mark.parametrize("transient", [True, False])
def test_transient_only_retries_outages_and_fails_the_rest_at_once(transient: bool) -> None:
    _ATTEMPTS.clear()
    result = _flaky_job(transient).execute_in_process(raise_on_error=False)
    if transient:
        assert result.success and _ATTEMPTS == [0, 1] and _retries(result) == 1
    else:
        assert not result.success and _ATTEMPTS == [0] and _retries(result) == 0
        [failure] = [e for e in result.all_events if e.is_step_failure]
        assert "IntegrityError: (builtins.Exception) dup" in (
            failure.step_failure_data.error.message)
    _ATTEMPTS.clear()
    generator = dg.materialize([_generator_asset], raise_on_error=False)
    assert not generator.success and _ATTEMPTS == [0] and _retries(generator) == 0
