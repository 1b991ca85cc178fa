"""A local webhook receiver that validates a body as Slack or Teams would, for the alert tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer


def slack_problem(payload: dict) -> str | None:
    """What a Slack incoming webhook rejects with HTTP 400 (docs.slack.dev: block kit limits)."""
    if not isinstance(payload.get("text"), str) or not payload["text"].strip():
        return "no_text"
    for block in payload.get("blocks", []):
        kind = block.get("type")
        if kind == "header":
            text = block.get("text", {})
            if text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= 150:
                return "invalid_blocks"
        elif kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and not fields:
                return "invalid_blocks"
            if text is not None and (text.get("type") not in ("mrkdwn", "plain_text")
                                     or not 0 < len(text.get("text", "")) <= 3000):
                return "invalid_blocks"
            if fields is not None and (len(fields) > 10 or any(
                    not 0 < len(f.get("text", "")) <= 2000 for f in fields)):
                return "invalid_blocks"
        else:
            return "invalid_blocks"
    return None


def teams_problem(payload: dict) -> str | None:
    """What a Teams Workflows webhook cannot render: a message with one Adaptive Card."""
    if payload.get("type") != "message" or not payload.get("attachments"):
        return "not a message with attachments"
    for attachment in payload["attachments"]:
        card = attachment.get("content", {})
        if (attachment.get("contentType") != "application/vnd.microsoft.card.adaptive"
                or card.get("type") != "AdaptiveCard" or not card.get("version")
                or not card.get("body")):
            return "not an Adaptive Card"
        for element in card["body"]:
            if element.get("type") == "TextBlock" and not element.get("text"):
                return "empty TextBlock"
            if element.get("type") == "FactSet" and any(
                    not isinstance(f.get("value"), str) for f in element.get("facts", [])):
                return "fact value not a string"
    return None


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that validates the body as Slack or Teams would (path /slack, /teams)."""

    received: list[dict] = []

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        check = slack_problem if self.path.startswith("/slack") else teams_problem
        problem = check(payload)
        type(self).received.append(payload)
        self.send_response(400 if problem else 200)
        self.end_headers()
        self.wfile.write((problem or "ok").encode())

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free local port in a thread; yields the base URL."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
