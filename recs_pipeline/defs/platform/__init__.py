"""Platform: what keeps the deployment observable and small, whatever the domain.

`alerts.py` (`run_failure_alert_sensor`: one structured alert per failed run, optionally POSTed
to a webhook) and `housekeeping.py` (`dagster_housekeeping_job` and its daily schedule: delete old
runs from the Dagster instance, never from the app database).
"""
