"""The OpenAPI 3.1 document served at `/api/openapi.json`. Keep it true with `api.py`."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(_ref("Error"), "Invalid input: `field` names what is wrong"),
    "401": _json(_ref("Error"), "No valid bearer token"),
    "403": _json(_ref("Error"), "The token's role may not do this"),
    "429": _json(_ref("Error"), "Over the token's (or address's) request budget: see Retry-After"),
}
NOT_FOUND = {"404": _json(_ref("Error"), "Not found")}


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, role: str = "agent", notes: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Needs the {role} role or higher.{' ' + notes if notes else ''}",
        "responses": {**responses, **ERRORS},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


NULLABLE_STR = {"type": ["string", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}

# POST /api/rules/check and PUT /api/rules: every error and warning of the rules, by path.
_PROBLEMS = {"type": "array", "items": _ref("RulesProblem")}
_WARNINGS = {**_PROBLEMS, "description": "what Twilio will not do exactly as written (e.g. a ring "
             "target shorter than its shortest dial); never refuses the rules"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}, "reason": {"type": "string"},
                       "errors": {"type": "array"}, "retry_after": {"type": "integer"}},
    },
    "Agent": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "status": {"type": "string", "enum": ["available", "ringing", "on_call", "wrap_up", "away", "offline"]},
            "misses": {"type": "integer"}, "languages": {"type": "array", "items": {"type": "string"}},
            "previous": {"type": "string"},
        },
    },
    "Verdict": {
        "type": "object",
        "required": ["allowed", "reason", "next_allowed_at", "zones"],
        "properties": {
            "allowed": {"type": "boolean"},
            "reason": {"type": ["string", "null"], "enum": [None, "opted_out_client", "opted_out_number",
                                                             "outside_hours", "holiday", "unknown_zone",
                                                             "invalid_number"]},
            "next_allowed_at": TIME,
            "next_allowed_local": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
            "zones": {"type": "array", "items": {"type": "string"}},
            "phone": {"type": "string"}, "e164": NULLABLE_STR, "call_sid": {"type": "string"},
            "error": {"type": "string"},
        },
    },
    "Event": {
        "type": "object",
        "description": "`data` of a recording_linked or voicemail_left event names the recording by `sid` / "
                       "`recording_sid` and `recording_path`, never by Twilio's media URL (for every role).",
        "required": ["id", "kind", "at"],
        "properties": {
            "id": {"type": "integer"}, "kind": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
            "call_sid": NULLABLE_STR, "agent_id": NULLABLE_STR, "queue": NULLABLE_STR, "data": {"type": "object"},
        },
    },
    "Card": {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "integer"}, "name": NULLABLE_STR, "language": NULLABLE_STR, "zone": NULLABLE_STR,
            "numbers": {"type": "array", "items": {
                "type": "object", "required": ["e164"],
                "properties": {"e164": {"type": "string"}, "label": NULLABLE_STR}}},
            "opted_out": {"type": "boolean"},
            "timeline": {"type": "array", "items": _ref("Event")}, "next": NULLABLE_STR,
        },
    },
    "OptOut": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}},
    "RulesProblem": {
        "type": "object", "required": ["path", "message"], "additionalProperties": False,
        "properties": {"path": {"type": "string", "description": "dotted field path, or <yaml>"},
                       "message": {"type": "string"}},
    },
    "RulesCheck": {
        "type": "object", "required": ["ok", "errors", "warnings"], "additionalProperties": False,
        "properties": {"ok": {"type": "boolean"}, "errors": _PROBLEMS, "warnings": _WARNINGS},
    },
    "RulesSaved": {
        "type": "object", "required": ["ok", "version", "warnings"], "additionalProperties": False,
        "properties": {"ok": {"const": True}, "version": {"type": "integer"}, "warnings": _WARNINGS},
    },
    "RulesInvalid": {
        "type": "object", "required": ["error", "errors", "warnings"], "additionalProperties": False,
        "properties": {"error": {"const": "invalid_rules"}, "errors": _PROBLEMS, "warnings": _WARNINGS},
    },
}

RECORDING_PATH = {"type": "string", "description": "the console's player (/console/recordings/{sid}), which "
                  "lets an agent hear only calls they took; Twilio's media URL is never returned"}
PURPOSE = {"type": "string", "description": "agent_call or one of the rules' outbound.purposes (400 otherwise)"}
PHONE_BODY = {
    "type": "object", "required": ["phone"],
    "properties": {"phone": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
                   "purpose": PURPOSE},
}

PATHS: dict[str, Any] = {
    "/agents": {"get": _op("Agents and their live status", {"200": _json({"type": "object"})})},
    "/agents/{agent_id}/status": {
        "parameters": [_path_param("agent_id", {"type": "string"})],
        "get": _op("An agent's status", {"200": _json(_ref("Agent")), **NOT_FOUND}),
        "put": _op(
            "Set an agent's status (agents: their own only)",
            {"200": _json(_ref("Agent")), "409": _json(_ref("Error"), "Refused (e.g. on a call)"), **NOT_FOUND},
            body={"type": "object", "required": ["status"],
                  "properties": {"status": {"type": "string", "enum": ["available", "away", "offline"]}}},
        ),
    },
    "/clients": {
        "get": _op("Find a client by any number format", {"200": _json({"type": "object"})},
                   params=[_query("phone", {"type": "string"}, required=True)]),
        "post": _op("Create a client card (201), or update the number's card (200)",
                    {"200": _json(_ref("Card")), "201": _json(_ref("Card"))},
                    notes="Only the fields the body names change; a field given as null or \"\" is cleared. "
                          "convenient_from and convenient_to are set or cleared together (400 otherwise).",
                    body={"type": "object", "required": ["phone"],
                          "properties": {"phone": {"type": "string"},
                                         "name": {"type": ["string", "null"], "maxLength": 200},
                                         "language": NULLABLE_STR, "zone": NULLABLE_STR,
                                         "convenient_from": {**NULLABLE_STR, "description": "local HH:MM"},
                                         "convenient_to": {**NULLABLE_STR, "description": "local HH:MM"}}}),
    },
    "/clients/{client_id}": {
        "parameters": [_path_param("client_id", {"type": "integer"})],
        "get": _op("The client card with its timeline, newest first",
                   {"200": _json(_ref("Card")), **NOT_FOUND},
                   params=[_query("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
                           _query("before", {"type": "string"})]),
    },
    "/clients/{client_id}/notes": {
        "parameters": [_path_param("client_id", {"type": "integer"})],
        "post": _op("Add a note or an agreement", {"201": _json(_ref("Event")), **NOT_FOUND},
                    body={"type": "object", "required": ["text"],
                          "properties": {"text": {"type": "string"},
                                         "kind": {"type": "string", "enum": ["note", "agreement"]}}}),
    },
    "/clients/{client_id}/opt-out": {
        "parameters": [_path_param("client_id", {"type": "integer"})],
        "post": _op("The client asked not to be called (all their numbers)", {"201": _json(_ref("OptOut")),
                                                                             **NOT_FOUND}),
    },
    "/opt-outs": {
        "get": _op("Active opt-outs", {"200": _json({"type": "object"})}, role="supervisor"),
        "post": _op("Opt a number out (with or without a card)", {"201": _json(_ref("OptOut"))},
                    body={"type": "object", "required": ["phone"],
                          "properties": {"phone": {"type": "string"}, "reason": {"type": "string"}}}),
    },
    "/opt-outs/{optout_id}": {
        "parameters": [_path_param("optout_id", {"type": "integer"})],
        "delete": _op("Withdraw an opt-out (logged on the card)", {"200": _json(_ref("OptOut")), **NOT_FOUND},
                      role="admin"),
    },
    "/outbound/check": {
        "post": _op("Would a call to this number be allowed now (or at `at`)?", {"200": _json(_ref("Verdict"))},
                    body=PHONE_BODY),
    },
    "/outbound/screen": {
        "post": _op("Screen many numbers", {"200": _json({"type": "object"})}, role="supervisor",
                    body={"type": "object", "required": ["phones"],
                          "properties": {"phones": {"type": "array", "items": {"type": "string"}},
                                         "at": {"type": "string", "format": "date-time"},
                                         "purpose": PURPOSE}}),
    },
    "/calls": {
        "post": _op(
            "Place a guarded outbound call (agent first, then the client)",
            {"201": _json(_ref("Verdict"), "Placed"),
             "409": _json(_ref("Verdict"), "Blocked by the guard: reason and next_allowed_at"),
             "502": _json(_ref("Error"), "Twilio refused the call")},
            notes="Always an agent_call: the legal windows apply (other purposes' windows are for the "
                  "work that owns them, e.g. callbacks).",
            body={"type": "object", "required": ["phone"],
                  "properties": {"phone": {"type": "string"}, "agent_id": {"type": "string"},
                                 "purpose": {"type": "string", "enum": ["agent_call"]}}},
        ),
    },
    "/rules": {
        "get": _op("The current routing rules", {"200": _json({"type": "object"})}, role="supervisor"),
        "put": _op("Replace the rules (YAML body); every error and warning is named by path",
                   {"200": _json(_ref("RulesSaved"), "Saved and live (warnings do not stop a save)"),
                    "422": _json(_ref("RulesInvalid"), "Errors: nothing was saved")}, role="admin"),
    },
    "/rules/check": {
        "post": _op("Validate a rules file (YAML body) without saving",
                    {"200": _json(_ref("RulesCheck"), "No errors (there may be warnings)"),
                     "422": _json(_ref("RulesCheck"), "Errors")}, role="admin"),
    },
}

# --- the service standard (webhooks/service_api.py, webhooks/audio.py) -------------------------

_ID = {"type": "integer"}
_STATUS = "Which ones"
SCHEMAS.update({
    "Complaint": {
        "type": "object", "required": ["id", "client_id", "status", "ack_due_at", "resolve_due_at"],
        "properties": {
            "id": _ID, "client_id": _ID, "call_sid": NULLABLE_STR, "queue": NULLABLE_STR,
            "summary": NULLABLE_STR, "status": {"type": "string", "enum": ["open", "acknowledged", "resolved"]},
            "opened_at": TIME, "opened_by": NULLABLE_STR, "ack_due_at": TIME, "resolve_due_at": TIME,
            "overdue": {"type": "boolean"}, "acknowledged_at": TIME, "acknowledged_by": NULLABLE_STR,
            "resolved_at": TIME, "resolved_by": NULLABLE_STR, "resolution": NULLABLE_STR, "escalated_at": TIME,
        },
    },
    "Voicemail": {
        "type": "object", "required": ["id", "status", "due_at"],
        "properties": {
            "id": _ID, "client_id": {"type": ["integer", "null"]}, "call_sid": NULLABLE_STR,
            "queue": NULLABLE_STR, "language": NULLABLE_STR, "recording_sid": {"type": "string"},
            "recording_path": RECORDING_PATH,
            "duration": {"type": ["integer", "null"]}, "created_at": TIME, "due_at": TIME,
            "status": {"type": "string", "enum": ["open", "handled"]}, "overdue": {"type": "boolean"},
            "handled_at": TIME, "handled_by": NULLABLE_STR, "note": NULLABLE_STR,
        },
    },
    "Callback": {
        "type": "object", "required": ["id", "client_id", "status"],
        "properties": {
            "id": _ID, "client_id": _ID, "e164": {"type": "string"}, "queue": {"type": "string"},
            "language": NULLABLE_STR, "status": {"type": "string"}, "attempts": _ID,
            "first_queued_at": TIME, "requested_at": TIME, "not_before": TIME, "due_at": TIME,
            "overdue": {"type": "boolean"}, "next_attempt_at": TIME, "last_result": NULLABLE_STR,
            "agent_id": NULLABLE_STR, "closed_at": TIME,
        },
    },
    "ReportRow": {
        "type": "object", "required": ["group", "calls"],
        "properties": {name: ({"type": "string"} if name == "group" else {"type": ["number", "null"]})
                       for name in ("group", "calls", "answered", "answered_within_target",
                                    "service_level_pct", "avg_rings_to_answer", "abandoned", "voicemails",
                                    "voicemails_answered_in_time", "callbacks", "callbacks_answered_in_time",
                                    "complaints", "complaints_acknowledged_in_time", "survey_responses",
                                    "survey_average")},
    },
})

_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 200})


def _list(name: str, statuses: list[str], default: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return _json({"type": "object", "properties": {name: {"type": "array", "items": _ref(name[:-1].title())}}}), [
        {**_query("status", {"type": "string", "enum": statuses, "default": default}), "description": _STATUS},
        _LIMIT]


_complaints_ok, _complaints_params = _list("complaints", ["open", "overdue", "acknowledged", "resolved",
                                                          "unresolved"], "unresolved")
_voicemails_ok, _voicemails_params = _list("voicemails", ["open", "overdue", "handled"], "open")
_callbacks_ok, _callbacks_params = _list("callbacks", ["open", "overdue", "pending", "dialling", "completed",
                                                       "failed", "cancelled", "blocked"], "open")
_DATE_OR_TIME = {"type": "string", "description": "a date (the hotline's midnight) or an ISO time with offset"}

PATHS.update({
    "/complaints": {
        "get": _op("Complaints (default: not yet resolved)", {"200": _complaints_ok}, role="supervisor",
                   params=_complaints_params),
        "post": _op("Open a complaint for a client (deadlines from the rules' `complaints`)",
                    {"201": _json(_ref("Complaint")), **NOT_FOUND},
                    body={"type": "object", "required": ["client_id", "summary"],
                          "properties": {"client_id": _ID, "summary": {"type": "string"}}}),
    },
    "/complaints/{complaint_id}/acknowledge": {
        "parameters": [_path_param("complaint_id", _ID)],
        "post": _op("A supervisor has seen the complaint", {"200": _json(_ref("Complaint")), **NOT_FOUND},
                    role="supervisor"),
    },
    "/complaints/{complaint_id}/resolve": {
        "parameters": [_path_param("complaint_id", _ID)],
        "post": _op("Close the complaint (acknowledges it too)", {"200": _json(_ref("Complaint")), **NOT_FOUND},
                    role="supervisor",
                    body={"type": "object", "properties": {"resolution": {"type": "string"}}}),
    },
    "/voicemails": {
        "get": _op("Voicemails: open (soonest due first), overdue, or handled", {"200": _voicemails_ok},
                   params=_voicemails_params),
    },
    "/voicemails/{voicemail_id}/handled": {
        "parameters": [_path_param("voicemail_id", _ID)],
        "post": _op("Mark a voicemail answered (a voicemail_handled card event)",
                    {"200": _json(_ref("Voicemail")), **NOT_FOUND},
                    body={"type": "object", "properties": {"note": {"type": "string"}}}),
    },
    "/callbacks": {
        "get": _op("Callbacks: open (in line order), overdue, or by status", {"200": _callbacks_ok},
                   params=_callbacks_params),
    },
    "/overdue": {
        "get": _op("How many voicemails, callbacks and complaints are overdue now",
                   {"200": _json({"type": "object", "additionalProperties": {"type": "integer"}})},
                   role="supervisor"),
    },
    "/reports/service-level": {
        "get": _op(
            "Service level in rings, abandonment, deadlines kept and survey scores (JSON or CSV)",
            {"200": {"description": "OK", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "rows": {"type": "array", "items": _ref("ReportRow")}}}},
                "text/csv": {"schema": {"type": "string"}}}}},
            role="supervisor",
            params=[{**_query("from", _DATE_OR_TIME, required=True)}, {**_query("to", _DATE_OR_TIME, required=True)},
                    _query("queue", {"type": "string"}),
                    _query("by", {"type": "string", "enum": ["queue", "agent", "hour"], "default": "queue"}),
                    _query("format", {"type": "string", "enum": ["json", "csv"], "default": "json"})],
        ),
    },
    "/audio/{lang}": {
        "parameters": [_path_param("lang", {"type": "string", "enum": ["en", "ru", "pl", "et"]})],
        "get": _op("The recordings this language needs and where each comes from (uploaded, shipped, missing)",
                   {"200": _json({"type": "object"}), **NOT_FOUND}, role="admin"),
    },
    "/audio/{lang}/{file}": {
        "parameters": [_path_param("lang", {"type": "string", "enum": ["en", "ru", "pl", "et"]}),
                       _path_param("file", {"type": "string", "pattern": r"^[a-z_][A-Za-z0-9_.-]*\.wav$"})],
        "put": {
            **_op("Upload a prompt recording (PCM WAV, 8-48 kHz, mono/stereo, at most 5 MB and 300 s); "
                  "served at /audio/{lang}/{file} before the shipped one",
                  {"200": _json({"type": "object"}, "Replaced"), "201": _json({"type": "object"}, "Stored"),
                   "413": _json(_ref("Error"), "Too large")}, role="admin"),
            "requestBody": {"required": True, "content": {"audio/wav": {"schema": {"type": "string",
                                                                                  "format": "binary"}}}},
        },
    },
})

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Hotline API", "version": "1", "description": "Client cards, agents, the outbound guard, "
             "rules, queues, voicemails, callbacks and complaints. Bearer tokens with roles."},
    "servers": [{"url": "/api"}],
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}],
    "paths": PATHS,
}
