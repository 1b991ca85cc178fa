"""Configure Django (once per process) for the test suite's Django app, on SQLite and PostgreSQL.

Two database aliases, `sqlite` and `postgresql`, with the settings docs/operations.md tells the app
team to use next to the pipeline: on SQLite `transaction_mode="IMMEDIATE"` and a `timeout`, so a
write waits for the pipeline's short write transactions instead of failing with "database is
locked". `use_sqlite_file` points the `sqlite` alias at a test's own file.
"""

from __future__ import annotations

import django
import sqlalchemy as sa
from django.conf import settings
from django.db import connections

SQLITE_OPTIONS = {"transaction_mode": "IMMEDIATE", "timeout": 20}


def configure(sqlite_path: str, postgres_url: str) -> None:
    """Idempotent: the first call configures Django, later calls only repoint the aliases."""
    pg = sa.make_url(postgres_url)
    databases = {
        "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path,
                   "OPTIONS": dict(SQLITE_OPTIONS)},
        "postgresql": {"ENGINE": "django.db.backends.postgresql", "NAME": pg.database,
                       "USER": pg.username or "postgres", "HOST": pg.host or "127.0.0.1",
                       "PORT": str(pg.port or 5432)},
    }
    if not settings.configured:
        settings.configure(
            DATABASES={"default": dict(databases["sqlite"]), **databases},
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                            "recs_pipeline_tests.django_app"],
            AUTH_USER_MODEL="platform.User",
            USE_TZ=True,
            TIME_ZONE="UTC",
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        )
        django.setup()
    for alias, config in databases.items():
        connections[alias].close()
        connections[alias].settings_dict.update(config)
