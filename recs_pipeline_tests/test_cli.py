"""CLI errors are one clean line with exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, env_url: str | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ)
    env.pop("RECS_DATABASE_URL", None)
    if env_url:
        env["RECS_DATABASE_URL"] = env_url
    return subprocess.run(
        [sys.executable, "-m", "recs_pipeline.cli", *args],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_unknown_scheme_is_a_clean_error() -> None:
    assert_clean_error(run_cli("--database-url", "mysql://x@localhost/db", "init-db"),
                       "unsupported database scheme")


def test_unreachable_server_is_a_clean_error() -> None:
    assert_clean_error(
        run_cli("--database-url", "postgresql://postgres@127.0.0.1:1/nope", "init-db"),
        "cannot connect",
    )


def test_unreachable_server_from_env_var_is_a_clean_error() -> None:
    assert_clean_error(run_cli("init-db", env_url="postgresql+psycopg2://postgres@127.0.0.1:1/x"),
                       "cannot connect")


@pytest.mark.parametrize("users", ["0", "-5", "abc"])
def test_non_positive_user_count_is_a_clean_error(users: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert_clean_error(run_cli("--database-url", url, "seed", "--users", users),
                       "positive integer")


def test_password_never_printed() -> None:
    result = run_cli("--database-url", "postgresql://postgres:s3cret@127.0.0.1:1/x", "init-db")
    assert result.returncode == 2
    assert "s3cret" not in result.stderr + result.stdout


@pytest.mark.db
def test_init_db_via_cli(database_url: str) -> None:
    result = run_cli("--database-url", database_url, "init-db")
    assert result.returncode == 0, result.stderr
    assert "7 achievements added" in result.stdout
