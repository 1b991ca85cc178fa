"""Development tooling: demo data (`seed.py`), the demo runner (`demo.py`), benchmarks (`bench/`).

Nothing here is loaded by the code location; `recs_pipeline.cli` reaches it on demand.
"""
