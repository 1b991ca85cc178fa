"""Fixtures shared by the platform tests: the validating webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from recs_pipeline_tests.webhook_receiver import Receiver, serving


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Receiver", (Receiver,), {"received": []})
    with serving(handler) as url:
        yield url, handler
