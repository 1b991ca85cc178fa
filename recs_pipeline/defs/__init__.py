"""Everything the code location defines, one folder per domain (`dg.load_from_defs_folder`).

- `app_tables.py`: the app-owned tables as external assets (group `app_database`).
- `resources.py`: the resources every domain shares (`app_db`).
- `recommendations/`: the nightly refresh, its quality gate and the one-user refresh.
- `achievements/`: the `app_events` outbox sensor and the job that awards achievements.
- `retention/`: the weekly purge of old activity rows.
- `platform/`: run-failure alerts and Dagster instance housekeeping.

A domain folder imports shared plumbing (`recs_pipeline.db`, `.schema`, `.resources`, `.tags`,
`.scheduling`, `.bootstrap`, `.compute`) and the modules at this level, never another domain.
"""
