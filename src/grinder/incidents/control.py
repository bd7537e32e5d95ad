"""The ledger on the service's control socket (``grinder incidents`` talks to these).

* ``GET /incidents?open=1&since=MS&limit=N`` -- summaries, the newest first
  (``{"incidents": [...], "store": ...}``);
* ``GET /incidents/{id}`` -- one record whole (evidence, steps, acknowledgement);
* ``POST /incidents/{id}/ack`` ``{"by": "...", "note": "..."}`` -- acknowledge it.

Bad input is HTTP 400 and an unknown id 404, each ``{"error": "<one line>"}``; every
reply passes ``grinder.redaction.redact`` like the other control replies.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from grinder.incidents.record_json import (
    full_json,
    summary_to_json,
)
from grinder.incidents.records import (
    LedgerError,
    UnknownIncident,
)
from grinder.incidents.sink import IncidentLedger
from grinder.redaction import redact

MAX_LIMIT = 1_000_000


def _reply(obj: Any, status: int = 200) -> web.Response:
    text = json.dumps(redact(obj, by_name=False), sort_keys=True, default=str)
    return web.json_response(text=text, status=status)


def _error(message: str, status: int = 400) -> web.Response:
    return _reply({"error": message}, status)


def _whole(request: web.Request, name: str, *, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"/incidents: {name} must be a whole number from {low} to {high}")
    return int(raw)


def add_incident_routes(app: web.Application, ledger: IncidentLedger | None) -> None:
    """Register the ledger's routes on the control app (nothing without a ledger)."""
    if ledger is None:
        return

    async def listing(request: web.Request) -> web.Response:
        try:
            since = _whole(request, "since", low=0, high=2**62)
            limit = _whole(request, "limit", low=1, high=MAX_LIMIT)
        except ValueError as exc:
            return _error(str(exc))
        open_only = request.query.get("open", "") in ("1", "true")
        try:
            found = ledger.summaries(open_only=open_only, since_ms=since, limit=limit)
        except LedgerError as exc:
            return _error(str(exc), 500)
        return _reply(
            {"incidents": [summary_to_json(s) for s in found], "store": ledger.store.where}
        )

    async def show(request: web.Request) -> web.Response:
        incident_id = request.match_info["incident_id"]
        try:
            rec = ledger.get(incident_id)
        except LedgerError as exc:
            return _error(str(exc), 500)
        if rec is None:
            return _error(f"no incident {incident_id!r} in {ledger.store.where}", 404)
        return _reply(full_json(rec))

    async def ack(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, RecursionError):
            return _error("request body is not JSON")
        if not isinstance(body, dict):
            return _error("request body must be a JSON object")
        by, note = body.get("by"), body.get("note")
        if not isinstance(by, str) or not isinstance(note, str):
            return _error('/incidents/ID/ack needs {"by": "<who>", "note": "<text>"}')
        try:
            rec = ledger.acknowledge(request.match_info["incident_id"], by, note)
        except UnknownIncident as exc:
            return _error(str(exc), 404)
        except LedgerError as exc:
            return _error(str(exc))
        except Exception as exc:  # the store failed (Redis down, a locked file): say so
            return _error(" ".join(f"{type(exc).__name__}: {exc}".split()), 500)
        return _reply(full_json(rec))

    app.router.add_get("/incidents", listing)
    app.router.add_get("/incidents/{incident_id}", show)
    app.router.add_post("/incidents/{incident_id}/ack", ack)
