"""Recommendations: per user, the top tournaments and teams to join, published for the app.

The flow, file by file:
`reading.py` (SQL: users, candidates, neighbourhoods) -> `assets.py` (`user_features`,
`tournament_candidates`, `team_candidates`, scored by `recs_pipeline.compute.scoring`) ->
`quality.py` (`recommendation_quality`: temporal-holdout evaluation, read by
`quality_reading.py`) with its blocking `quality_gate` in `checks.py` -> `run.py` and
`publishing.py` (stage, run the blocking checks of `checks.py` on the staged rows, one atomic swap
into `tournament_recommendations` / `team_recommendations`).
`jobs.py` holds the nightly asset job and the one-user refresh, `schedules.py` their crons, and
`bucketed.py` the scale-out refresh (one run per user bucket, the last one publishes).
"""
