"""recs_pipeline: the Dagster code location of the tournament platform's data work."""

__version__ = "0.1.0"
