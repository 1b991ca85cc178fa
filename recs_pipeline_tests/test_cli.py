"""CLI errors are one clean line with exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from recs_pipeline.defs.achievements import store
from recs_pipeline_tests import achievements_data as data


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


def test_huge_user_count_is_a_clean_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert run_cli("--database-url", url, "init-db").returncode == 0
    assert_clean_error(run_cli("--database-url", url, "seed", "--users", str(10**12)),
                       "at most 10,000,000 users")


@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_uncreatable_sqlite_directory_is_a_clean_error(where: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = Path("/proc/recs-nope/app.db") if where == "proc" else blocker / "sub" / "app.db"
    assert_clean_error(run_cli("--database-url", f"sqlite:///{path}", "init-db"),
                       f"cannot create directory {path.parent}")


@pytest.mark.db
def test_events_replay_prints_plain_ints(database_url: str, engine: Engine) -> None:
    data.build_world(engine)
    store.process_events(engine, ranges=[[1, 14]], event_ids=[13])
    result = run_cli("--database-url", database_url, "events", "replay", "--event-id", "9", "12")
    assert result.returncode == 0, result.stderr
    assert "still dead-lettered 2 {'malformed_payload': 1, 'null_user': 1}" in result.stdout
    assert "np." not in result.stdout


def test_seed_out_of_memory_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Below the bound a smaller machine can still run out of memory: one line, exit 2."""
    from recs_pipeline import cli
    from recs_pipeline.devtools import seed

    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(seed, "seed_database", exhausted)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert cli.main(["--database-url", url, "seed", "--users", "5000000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not enough memory to seed 5,000,000 users" in err
