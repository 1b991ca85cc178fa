"""The code location loads, validates, and exposes exactly the expected definitions."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg

from recs_pipeline.definitions import defs

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The snapshot: update deliberately when a definition is added or renamed.
EXPECTED_APP_TABLES = {
    "users", "games", "game_profiles", "profile_completeness", "tournaments",
    "tournament_participants", "teams", "team_members", "activities", "achievements",
    "user_achievements", "app_events",
}
EXPECTED_PIPELINE_ASSETS: set[str] = {
    "user_features", "tournament_candidates", "team_candidates", "tournament_recommendations",
    "team_recommendations", "recommendation_quality",
}
EXPECTED_JOBS: set[str] = {
    "dagster_housekeeping_job", "retention_purge_job", "achievements_job",
    "nightly_recommendations_job", "refresh_user_recommendations_job",
    "nightly_recommendations_bucketed_job", "replay_dead_letters_job",
    "recommendation_upkeep_job", "recommendation_staleness_job",
}
EXPECTED_SCHEDULES: dict[str, str] = {  # name -> cron
    "dagster_housekeeping_schedule": "45 4 * * *",
    "weekly_retention_purge_schedule": "30 3 * * 0",
    "nightly_recommendations_schedule": "0 2 * * *",
    "nightly_recommendations_bucketed_schedule": "0 2 * * *",
    "recommendation_upkeep_schedule": "*/15 * * * *",
    "recommendation_staleness_schedule": "5 * * * *",
}
EXPECTED_SENSORS: set[str] = {"run_failure_alert_sensor", "achievement_events_sensor",
                              "freshness_alert_sensor", "user_refresh_request_sensor"}
PUBLISHED_TABLE_CHECKS = ("at_most_k", "coverage", "eligibility", "no_duplicate_items", "no_pii",
                          "ranks_contiguous", "scores_valid", "ineligible_share")
EXPECTED_CHECKS: set[str] = {"recommendation_quality:quality_gate",
                             "app/app_events:outbox_lag",
                             "app/app_events:unresolved_dead_letters"} | {
    f"{asset}:input_quarantine"
    for asset in ("user_features", "tournament_candidates", "team_candidates")
} | {
    f"{table}:{check}" for table in ("tournament_recommendations", "team_recommendations")
    for check in PUBLISHED_TABLE_CHECKS
}


def test_definitions_snapshot() -> None:
    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert keys == {f"app/{t}" for t in EXPECTED_APP_TABLES} | EXPECTED_PIPELINE_ASSETS
    jobs = {job.name for job in repo.get_all_jobs()} - {"__ASSET_JOB"}
    assert jobs == EXPECTED_JOBS
    assert {s.name: s.cron_schedule for s in repo.schedule_defs} == EXPECTED_SCHEDULES
    assert {s.name for s in repo.sensor_defs} == EXPECTED_SENSORS
    checks = {f"{k.asset_key.to_user_string()}:{k.name}" for k in repo.asset_graph.asset_check_keys}
    assert checks == EXPECTED_CHECKS


def test_the_staleness_checks_run_hourly_not_in_the_nightly_job() -> None:
    staleness = {"tournament_recommendations_ineligible_share",
                 "team_recommendations_ineligible_share"}
    nightly = set(defs.resolve_job_def("nightly_recommendations_job").graph.node_names())
    assert {"publish_recommendations", "recommendation_quality_quality_gate"} <= nightly
    assert not nightly & staleness
    hourly = set(defs.resolve_job_def("recommendation_staleness_job").graph.node_names())
    assert hourly == staleness


def test_every_asset_has_a_description() -> None:
    repo = defs.get_repository_def()
    for key in repo.asset_graph.get_all_asset_keys():
        node = repo.asset_graph.get(key)
        assert node.description, f"{key.to_user_string()} has no description"


def _cli_env() -> dict[str, str]:
    # A CLI run from the repository root with no DAGSTER_HOME: a temporary instance.
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}


def test_dagster_definitions_validate_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate",
         "-m", "recs_pipeline.definitions"],
        capture_output=True, text=True, timeout=180, check=False, env=_cli_env(),
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_dg_check_defs_passes() -> None:
    dg_cli = Path(sys.executable).with_name("dg")
    result = subprocess.run(
        [str(dg_cli), "check", "defs"],
        capture_output=True, text=True, timeout=180, check=False, env=_cli_env(),
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_app_database_resource_is_bound() -> None:
    assert isinstance(defs.resources["app_db"], dg.ConfigurableResource)


def _imports_of(path: Path) -> set[str]:
    """Absolute module names a file imports (anywhere in it, lazy imports included)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_domain_folders_never_import_each_other() -> None:
    defs_dir = PROJECT_ROOT / "recs_pipeline" / "defs"
    domains = sorted(p.name for p in defs_dir.iterdir() if (p / "__init__.py").exists())
    assert domains == ["achievements", "platform", "recommendations", "retention"]
    edges = []
    for domain in domains:
        for path in (defs_dir / domain).rglob("*.py"):
            for name in _imports_of(path):
                for other in domains:
                    if other != domain and name.startswith(f"recs_pipeline.defs.{other}"):
                        edges.append(f"{path.relative_to(PROJECT_ROOT)} -> {name}")
    assert edges == []


def test_compute_is_pure_and_nothing_uses_private_dagster_apis() -> None:
    package = PROJECT_ROOT / "recs_pipeline"
    for path in (package / "compute").rglob("*.py"):
        imports = _imports_of(path)
        assert not {n for n in imports if n.split(".")[0] == "dagster"}, path
        assert not {n for n in imports if n.startswith("recs_pipeline.defs")}, path
    for path in package.rglob("*.py"):
        private = {n for n in _imports_of(path) if n.startswith("dagster._")}
        assert not private, f"{path}: {private}"


def test_code_location_imports_no_development_tooling() -> None:
    probe = (
        "import sys, recs_pipeline.definitions\n"
        "dev = sorted(m for m in sys.modules if m.startswith('recs_pipeline.devtools')"
        " or m == 'recs_pipeline.cli')\n"
        "print(dev)\n"
        "assert not dev, dev\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, check=False, env=_cli_env(), cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_layout_block_is_the_real_tree() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    # an entry starts in the name column; deeper-indented lines continue a description
    listed = {line.split()[0].rstrip("/") for line in block.splitlines()
              if line.strip() and len(line) - len(line.lstrip()) < 20}
    package = PROJECT_ROOT / "recs_pipeline"
    real = {"recs_pipeline", "recs_pipeline_tests", "docs", "deploy"}
    real |= {p.name for p in package.iterdir() if p.suffix == ".py" and p.name != "__init__.py"}
    real |= {p.name for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"}
    real |= {p.name for p in (package / "defs").iterdir()
             if p.name not in {"__init__.py", "__pycache__"}}
    assert listed == real


def test_docs_reference_only_files_and_modules_that_exist() -> None:
    missing = []
    for doc in [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for path in re.findall(r"(recs_pipeline(?:_tests)?/[\w/]+\.py)", text):
            if not (PROJECT_ROOT / path).exists():
                missing.append(f"{doc.name}: {path}")
        for module in re.findall(r"`(recs_pipeline(?:\.\w+)+)", text):
            parts = module.split(".")
            # `pkg.module` or `pkg.module.attribute`
            candidates = [Path(*parts[:n]) for n in (len(parts), len(parts) - 1)]
            if not any((PROJECT_ROOT / c).with_suffix(".py").exists()
                       or (PROJECT_ROOT / c / "__init__.py").exists() for c in candidates):
                missing.append(f"{doc.name}: {module}")
    assert missing == []
