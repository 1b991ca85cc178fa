"""Run config that fails fast: a bad value is a permanent error, never retried.

Dagster's run config schema carries types but not bounds (`ge`, `le`, validators); those are
checked by pydantic when a step builds its config, inside the step, where a job's RetryPolicy
would retry a `ValidationError` like any other error (measured: `holdout_days=0` took 353 s over 3
retries). `FailFastConfig` turns a validation error into `dg.Failure(allow_retries=False)` with a
one-line message, and `validate_run_config` lets a job's first step check the config of its later
steps, so a bad value fails the run before any data is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import ValidationError, model_validator


def validation_message(name: str, exc: ValidationError) -> str:
    """`invalid <name>: field: problem; ...` on one line (values are not echoed)."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}"
        for error in exc.errors()
    )
    return f"invalid {name}: {problems}"


class FailFastConfig(dg.Config):
    """A `dg.Config` whose validation errors fail the step at once, without retries."""

    @model_validator(mode="wrap")
    @classmethod
    def _fail_fast(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise dg.Failure(description=validation_message(f"config {cls.__name__}", exc),
                             allow_retries=False) from None


def validate_run_config(
    context: dg.OpExecutionContext, configs: Mapping[str, type[dg.Config]]
) -> None:
    """Build every listed op's config from the run config now (op name -> its Config class), so
    a later step's bad value fails this first step (`dg.Failure`, not retried)."""
    ops = (context.run.run_config or {}).get("ops", {})
    for op_name, config_class in configs.items():
        values = (ops.get(op_name) or {}).get("config") or {}
        try:
            config_class(**values)
        except ValidationError as exc:  # a plain dg.Config
            raise dg.Failure(description=validation_message(f"config of {op_name}", exc),
                             allow_retries=False) from None
