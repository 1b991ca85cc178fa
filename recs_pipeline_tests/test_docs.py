"""The README reaches every doc, its links resolve, and `.env.example` names every variable the
code reads."""

from __future__ import annotations

import re
from pathlib import Path

from recs_pipeline import alerting, resources, scheduling
from recs_pipeline.defs.achievements.sensor import ENV_PREFIX, AchievementSensorSettings

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_links_every_doc_and_every_link_resolves() -> None:
    readme = (ROOT / "README.md").read_text()
    links = set(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme))
    assert links, "no markdown links found"
    for link in links:
        if not link.startswith(("http://", "https://")):
            assert (ROOT / link).exists(), f"README links a missing file: {link}"
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert docs - links == set(), "docs the README does not link"


def test_env_example_names_every_variable_the_code_reads() -> None:
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    required = {resources.DATABASE_URL_ENV_VAR, alerting.WEBHOOK_URL_ENV_VAR,
                alerting.WEBHOOK_FORMAT_ENV_VAR,
                alerting.UI_BASE_URL_ENV_VAR, scheduling.SCHEDULE_TIMEZONE_ENV_VAR}
    assert required - named == set()
    sensor_vars = {f"{ENV_PREFIX}{name.upper()}"
                   for name in AchievementSensorSettings.__dataclass_fields__}
    assert {n for n in named if n.startswith(ENV_PREFIX)} <= sensor_vars
    production = (ROOT / "deploy/production/dagster.yaml").read_text()
    assert set(re.findall(r"env: (DAGSTER_PG_\w+)", production)) - named == set()
