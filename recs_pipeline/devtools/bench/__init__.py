"""Benchmark commands: `recs-pipeline bench <topic>`.

Each topic module exposes `add_arguments(parser)` and `run(args) -> int`, and keeps heavy imports
inside `run`. Benchmarks print figures; they are never part of the test suite.
"""

from __future__ import annotations

# topic name -> module path. Add a line when you add a topic.
BENCH_TOPICS: dict[str, str] = {
    "seed": "recs_pipeline.devtools.bench.seed",
    "retention": "recs_pipeline.devtools.bench.retention",
    "quality": "recs_pipeline.devtools.bench.quality",
    "achievements": "recs_pipeline.devtools.bench.achievements",
    "recommendations": "recs_pipeline.devtools.bench.recommendations",
    "swap": "recs_pipeline.devtools.bench.swap",
    "faults": "recs_pipeline.devtools.bench.faults",
    "bad-input": "recs_pipeline.devtools.bench.bad_input",
    "user-refresh": "recs_pipeline.devtools.bench.user_refresh",
    "nightly": "recs_pipeline.devtools.bench.nightly",
    "upkeep": "recs_pipeline.devtools.bench.upkeep",
}
