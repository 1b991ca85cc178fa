"""Job definitions: asset jobs and op-based jobs."""

from __future__ import annotations

import dagster as dg

ALL_JOBS: list[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] = []
