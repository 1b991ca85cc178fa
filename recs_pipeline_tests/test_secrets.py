"""A password in the database URL is never printed: not by the CLI, not in a failed run's events,
not in a sensor tick error, whether the URL is unparsable, unsupported or unreachable."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from recs_pipeline.db import DatabaseConfigError, make_engine, redact_url
from recs_pipeline.defs.achievements.sensor import achievement_events_sensor
from recs_pipeline.resources import AppDatabase
from recs_pipeline.retries import transient_errors_retry

# Two distinctive halves: the '@' form below splits the password there, and neither half may leak.
HEAD, TAIL = "Hunter2s3cret", "Tail9Zq"
SECRET_PARTS = (HEAD, TAIL)

# (a) unparsable (bad port), (b) unsupported scheme, (c) unreachable server (connection refused)
TARGETS = {
    "bad-port": ("postgresql", "dbhost:notaport/app"),
    "unsupported-scheme": ("mysql", "dbhost/app"),
    "unreachable": ("postgresql", "127.0.0.1:1/app"),
}
# Where the password sits: userinfo, userinfo with an unescaped '@' (a common mistake: it must be
# written %40), or libpq's `password` query parameter.
FORMS = {
    "userinfo": lambda scheme, rest: f"{scheme}://app:{HEAD}{TAIL}@{rest}",
    "unescaped-at": lambda scheme, rest: f"{scheme}://app:{HEAD}@{TAIL}@{rest}",
    "query": lambda scheme, rest: f"{scheme}://app@{rest}?password={HEAD}{TAIL}",
}
URLS = {
    f"{target}-{form}": build(*TARGETS[target])
    for target in TARGETS
    for form, build in FORMS.items()
}


@pytest.fixture(params=sorted(URLS))
def secret_url(request: pytest.FixtureRequest) -> str:
    return URLS[request.param]


def assert_no_secret(text: str) -> None:
    assert text.strip(), "nothing captured: the check would pass vacuously"
    for part in SECRET_PARTS:
        assert part not in text, text


def exception_chain_text(exc: BaseException) -> str:
    """The exception and every cause/context, even suppressed ones (`raise ... from None`)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append("".join(traceback.format_exception(seen, chain=False)))
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def test_cli_never_prints_the_password(secret_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["RECS_DATABASE_URL"] = secret_url
    result = subprocess.run(
        [str(Path(sys.executable).with_name("recs-pipeline")), "init-db"],
        capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path,
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert_no_secret(result.stderr + result.stdout)


# Every bench command that takes a PostgreSQL server URL, with what else it requires.
BENCH_COMMANDS = {
    "swap": ["bench", "swap"],
    "retention": ["bench", "retention"],
    "achievements": ["bench", "achievements"],
    "faults": ["bench", "faults", "--cluster", "15 nowhere"],
    "bad-input": ["bench", "bad-input", "--backends", "postgresql"],
    "user-refresh": ["bench", "user-refresh"],
    "nightly": ["bench", "nightly"],
}


@pytest.mark.parametrize("form", ["bad-port-userinfo", "bad-port-unescaped-at"])
@pytest.mark.parametrize("command", sorted(BENCH_COMMANDS))
def test_bench_server_url_is_a_clean_error_without_the_password(
    command: str, form: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("recs-pipeline")), *BENCH_COMMANDS[command],
         "--server-url", URLS[form]],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "cannot parse database URL" in result.stderr
    assert_no_secret(result.stderr + result.stdout)


@dg.asset
def app_db_probe(app_db: AppDatabase) -> None:
    """Reaches the database the way the pipeline's ops do (no retry policy: fails at once)."""
    with transient_errors_retry(), app_db.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def test_failed_run_events_never_hold_the_password(secret_url: str) -> None:
    result = dg.materialize(
        [app_db_probe], resources={"app_db": AppDatabase(url=secret_url)}, raise_on_error=False
    )
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the step did not fail"
    # Everything the instance would store: messages, error infos, metadata.
    assert_no_secret("\n".join(
        f"{event.message}\n{dg.serialize_value(event)}" for event in result.all_events
    ))


def test_sensor_tick_error_never_holds_the_password(
    secret_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        dg.build_sensor_context(resources={"app_db": AppDatabase(url=secret_url)}) as context,
        pytest.raises(Exception) as raised,
    ):
        achievement_events_sensor(context)
    assert_no_secret(exception_chain_text(raised.value) + caplog.text)


@pytest.mark.parametrize(("url", "redacted"), [
    ("postgresql://app:pw@host:5432/db", "postgresql://app:***@host:5432/db"),
    ("postgresql://app:pw@[::1]:5432/db", "postgresql://app:***@[::1]:5432/db"),
    ("postgresql://:pw@host/db", "postgresql://:***@host/db"),
    ("postgresql://app:S3cret@PW@host/db", "postgresql://app:***@host/db"),  # unescaped '@'
    ("postgresql://app:ab/cd@host/db", "postgresql://app:***@host/db"),  # unescaped '/'
    ("postgresql://app:pw@host:notaport/db", "postgresql://app:***@host:notaport/db"),
    ("postgresql://app:S3cretPW/db", "postgresql://app:***/db"),  # "@host" left out
    ("app:pw@host/db", "app:***@host/db"),  # scheme left out
    ("postgresql://app@host/db?sslmode=require&password=pw",
     "postgresql://app@host/db?sslmode=require&password=***"),
])
def test_redact_url_hides_the_password_parsable_or_not(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize("url", [
    "postgresql://app@host:5432/db", "postgresql://[::1]:5432/db", "sqlite:///tmp/a@b:c.db",
    "sqlite:////abs/app.db", "sqlite://",
])
def test_redact_url_keeps_urls_without_a_password(url: str) -> None:
    assert redact_url(url) == url


def test_a_password_in_the_port_position_is_not_echoed() -> None:
    """SQLAlchemy's own message quotes the port: here the password, its "@host" left out."""
    with pytest.raises(DatabaseConfigError) as raised:
        make_engine(f"postgresql://app:{HEAD}{TAIL}/app")
    assert "cannot parse database URL postgresql://app:***/app" in str(raised.value)
    assert_no_secret(exception_chain_text(raised.value))
