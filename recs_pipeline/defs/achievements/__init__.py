"""Achievements: each awarded at most once per user, driven by the app's `app_events` outbox.

The flow: `sensor.py` (`achievement_events_sensor`) reads pending event ids and requests one
`achievements_job` run per batch (run keys guard against duplicates) -> `job.py` (ops: load the
batch, compute metrics, evaluate, award and mark processed in one transaction) -> `store.py` (all
SQL: the outbox reads, the ledger of processed events, dead letters, awards). The rules themselves
are pure functions in `recs_pipeline.compute.achievements`.
"""
