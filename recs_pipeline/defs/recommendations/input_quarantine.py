"""The `input_quarantine` asset checks: app rows set aside by the reads, judged per table.

Each asset that reads app tables carries one blocking check. It passes when nothing was
quarantined, WARNs above `InputQuarantinePolicy.warn_share` of a table's rows and fails with
ERROR severity above `error_share` (and `error_min_rows`), which stops the publish
(docs/data-contract.md, "Bad input").
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from recs_pipeline.compute.quarantine import Quarantine
from recs_pipeline.resources import InputQuarantinePolicy

INPUT_QUARANTINE_CHECK = "input_quarantine"

QUARANTINE_TABLE_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("table", "string", description="App table the row was read from."),
    dg.TableColumn("column", "string", description="The column that broke the contract."),
    dg.TableColumn("reason", "string"),
    dg.TableColumn("rows", "int", description="Rows quarantined for this reason."),
    dg.TableColumn("effect", "string", description="What the pipeline did with them."),
    dg.TableColumn("example_ids", "string", description="A few primary keys (never content)."),
])


def input_quarantine_check_spec(asset_key: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        INPUT_QUARANTINE_CHECK, asset=asset_key, blocking=True,
        description="Share of each app table's rows quarantined by this read (unparsable or "
        "outside the data contract): WARN above warn_share, ERROR (nothing published) above "
        "error_share and error_min_rows of the input_quarantine resource.",
    )


def quarantine_metadata(quarantine: Quarantine) -> dict[str, Any]:
    """Metadata every reading asset carries: the total and the (table, column, reason) table."""
    records = quarantine.records()
    return {
        "quarantined_rows": quarantine.total,
        "quarantined": dg.MetadataValue.table(
            records=[dg.TableRecord(r) for r in records], schema=QUARANTINE_TABLE_SCHEMA),
    }


def quarantine_check_result(
    asset_key: str, quarantine: Quarantine, policy: InputQuarantinePolicy
) -> dg.AssetCheckResult:
    shares = quarantine.shares()
    worst = quarantine.max_share()
    rows = quarantine.rows_by_table()
    failed = any(share > policy.error_share and rows[table] >= policy.error_min_rows
                 for table, share in shares.items())
    warned = quarantine.total > 0 and worst > policy.warn_share
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=INPUT_QUARANTINE_CHECK,
        passed=not (failed or warned),
        severity=dg.AssetCheckSeverity.ERROR if failed else dg.AssetCheckSeverity.WARN,
        description=quarantine.summary_line(),
        metadata={
            "quarantined_rows": quarantine.total,
            "worst_share": dg.MetadataValue.float(round(worst, 6)),
            "share_by_table": dg.MetadataValue.json({t: round(v, 6) for t, v in shares.items()}),
            "warn_share": policy.warn_share,
            "error_share": policy.error_share,
            "error_min_rows": policy.error_min_rows,
        },
    )
