"""Retention: the weekly purge of activities, processed events and old bookkeeping rows.

The flow: `schedule.py` (Sundays 03:30) -> `job.py` (`retention_purge_job`: plan the cutoff, then
delete in short batches, each its own transaction). Cutoff and batch rules are pure functions in
`recs_pipeline.compute.retention`.
"""
