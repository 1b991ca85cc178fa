"""Fixtures shared by the platform tests: the validating webhook receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import HTTPServer

import pytest

from recs_pipeline_tests.webhook_receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Receiver", (Receiver,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", handler
    server.shutdown()
    server.server_close()
