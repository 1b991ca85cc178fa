"""The code location: `defs` is what `dagster dev`, `dg dev` and the daemon load.

Everything under `recs_pipeline/defs/` is discovered by `dg.load_from_defs_folder`: one folder per
domain (recommendations, achievements, retention, platform), the app tables as external assets and
the shared resources. Adding a definition means adding it to its domain's module, nothing here.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
