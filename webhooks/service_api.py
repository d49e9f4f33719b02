"""`/api` for the rest of the service standard: complaints, voicemails, callbacks, overdue work,
the service-level report and prompt recordings. Same conventions as `api.py` (bearer roles,
`BadRequest` naming the field); a separate blueprint so the areas can change independently.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from recordings import card, db, jobs, overdue, reports
from recordings.models import CALLBACK_STATUSES, Callback, Complaint, Voicemail
from routing_rules.prompts import audio_files
from routing_rules.schema import Rules

from . import audio
from .api import (
    BadRequest,
    bad_request,
    body,
    http_error,
    id_in_range,
    ids_in_range,
    iso,
    optional_body,
    parse_limit,
    recording_path,
    requires,
)
from .runtime import Runtime

bp = Blueprint("service_api", __name__, url_prefix="/api")
bp.register_error_handler(BadRequest, bad_request)
bp.register_error_handler(HTTPException, http_error)
bp.url_value_preprocessor(ids_in_range)  # path ids past INTEGER: a 404, not the driver's overflow

COMPLAINT_FILTERS = ("open", "overdue", "acknowledged", "resolved", "unresolved")
VOICEMAIL_FILTERS = ("open", "overdue", "handled")
CALLBACK_FILTERS = ("open", "overdue", *CALLBACK_STATUSES)


def rt() -> Runtime:
    return current_app.extensions["hotline"]


def complaint_deadlines(rules: Rules) -> tuple[timedelta, timedelta]:
    c = rules.complaints
    return timedelta(minutes=c.acknowledge_within_minutes), timedelta(hours=c.resolve_within_hours)


def init_app(app: Flask) -> None:
    """Register the blueprints; give menu complaints the rules' deadlines when their job runs."""
    app.register_blueprint(bp)
    app.register_blueprint(audio.bp)
    runtime: Runtime = app.extensions["hotline"]
    jobs.use_complaint_deadlines(lambda: complaint_deadlines(runtime.rules.current()))


def status_arg(allowed: tuple[str, ...], default: str) -> str:
    status = request.args.get("status", default)
    if status not in allowed:
        raise BadRequest("status", f"one of {', '.join(allowed)}")
    return status


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- JSON shapes ----------------------------------------------------------------------------


def voicemail_json(vm: Voicemail, now: datetime) -> dict[str, Any]:
    return {
        "id": vm.id, "client_id": vm.client_id, "call_sid": vm.call_sid, "queue": vm.queue,
        "language": vm.language, "duration": vm.duration,
        # the console's player, never Twilio's URL (see api.recording_path)
        "recording_sid": vm.recording_sid, "recording_path": recording_path(vm.recording_sid),
        "created_at": iso(vm.created_at), "due_at": iso(vm.due_at), "status": vm.status,
        "overdue": vm.is_overdue(now), "handled_at": iso(vm.handled_at), "handled_by": vm.handled_by,
        "note": vm.note,
    }


def callback_json(cb: Callback, now: datetime) -> dict[str, Any]:
    return {
        "id": cb.id, "client_id": cb.client_id, "e164": cb.e164, "queue": cb.queue,
        "language": cb.language, "status": cb.status, "attempts": cb.attempts,
        "first_queued_at": iso(cb.first_queued_at), "requested_at": iso(cb.requested_at),
        "not_before": iso(cb.not_before), "due_at": iso(cb.due_at),
        "overdue": cb.is_open and cb.due_at is not None and now > cb.due_at,
        "next_attempt_at": iso(cb.next_attempt_at), "last_result": cb.last_result,
        "agent_id": cb.agent_id, "closed_at": iso(cb.closed_at),
    }


def complaint_json(row: Complaint, now: datetime) -> dict[str, Any]:
    late_ack = row.status == "open" and now > row.ack_due_at
    late_resolve = row.status != "resolved" and now > row.resolve_due_at
    return {
        "id": row.id, "client_id": row.client_id, "call_sid": row.call_sid, "queue": row.queue,
        "summary": row.summary, "status": row.status, "opened_at": iso(row.opened_at),
        "opened_by": row.opened_by, "ack_due_at": iso(row.ack_due_at),
        "resolve_due_at": iso(row.resolve_due_at), "overdue": late_ack or late_resolve,
        "acknowledged_at": iso(row.acknowledged_at), "acknowledged_by": row.acknowledged_by,
        "resolved_at": iso(row.resolved_at), "resolved_by": row.resolved_by,
        "resolution": row.resolution, "escalated_at": iso(row.escalated_at),
    }


# --- complaints -----------------------------------------------------------------------------


@bp.get("/complaints")
@requires("supervisor")
def list_complaints():
    status = status_arg(COMPLAINT_FILTERS, "unresolved")
    now = now_utc()
    with db.session(readonly=True) as s:
        rows = card.list_complaints(s, status, now=now, limit=parse_limit())
        return jsonify(complaints=[complaint_json(r, now) for r in rows])


@bp.post("/complaints")
@requires("agent")
def open_complaint():
    data = body()
    client_id, summary = data.get("client_id"), data.get("summary")
    if not isinstance(client_id, int) or isinstance(client_id, bool):
        raise BadRequest("client_id", "required: the client's card id (an integer)")
    id_in_range("client_id", client_id)
    if not isinstance(summary, str) or not summary.strip():
        raise BadRequest("summary", "required: what the client complains about")
    rules = rt().rules.current()
    ack_within, resolve_within = complaint_deadlines(rules)
    now = now_utc()
    with db.session() as s:
        if card.get_client(s, client_id) is None:
            raise BadRequest("client_id", f"no client {client_id}", 404)
        row, _ = card.open_complaint(s, client_id, summary=summary.strip(), queue=rules.complaints_queue(),
                                     by=g.principal.name, at=now, ack_within=ack_within,
                                     resolve_within=resolve_within)
        return jsonify(complaint_json(row, now)), 201


def _complaint_action(complaint_id: int, action: str) -> Any:
    resolution = optional_body().get("resolution")
    if resolution is not None and not isinstance(resolution, str):
        raise BadRequest("resolution", "text, if given")
    now = now_utc()
    with db.session() as s:
        if s.get(Complaint, complaint_id) is None:
            raise BadRequest("complaint_id", f"no complaint {complaint_id}", 404)
        if action == "acknowledge":
            row = card.acknowledge_complaint(s, complaint_id, by=g.principal.name, at=now)
        else:
            row = card.resolve_complaint(s, complaint_id, by=g.principal.name, resolution=resolution, at=now)
        return jsonify(complaint_json(row, now))


@bp.post("/complaints/<int:complaint_id>/acknowledge")
@requires("supervisor")
def acknowledge_complaint(complaint_id: int):
    return _complaint_action(complaint_id, "acknowledge")


@bp.post("/complaints/<int:complaint_id>/resolve")
@requires("supervisor")
def resolve_complaint(complaint_id: int):
    return _complaint_action(complaint_id, "resolve")


# --- voicemails and callbacks ---------------------------------------------------------------


@bp.get("/voicemails")
@requires("agent")
def list_voicemails():
    status = status_arg(VOICEMAIL_FILTERS, "open")
    now = now_utc()
    with db.session(readonly=True) as s:
        rows = card.list_voicemails(s, status, now=now, limit=parse_limit())  # type: ignore[arg-type]
        return jsonify(voicemails=[voicemail_json(v, now) for v in rows])


@bp.post("/voicemails/<int:voicemail_id>/handled")
@requires("agent")
def voicemail_handled(voicemail_id: int):
    note = optional_body().get("note")
    if note is not None and not isinstance(note, str):
        raise BadRequest("note", "text, if given")
    now = now_utc()
    with db.session() as s:
        if s.get(Voicemail, voicemail_id) is None:
            raise BadRequest("voicemail_id", f"no voicemail {voicemail_id}", 404)
        vm = card.mark_voicemail_handled(s, voicemail_id, by=g.principal.name, note=note, at=now)
        return jsonify(voicemail_json(vm, now))


@bp.get("/callbacks")
@requires("agent")
def list_callbacks():
    status = status_arg(CALLBACK_FILTERS, "open")
    now = now_utc()
    with db.session(readonly=True) as s:
        rows = card.list_callbacks(s, status, now=now, limit=parse_limit())
        return jsonify(callbacks=[callback_json(c, now) for c in rows])


@bp.get("/overdue")
@requires("supervisor")
def overdue_now():
    with db.session(readonly=True) as s:
        return jsonify(overdue.overdue_counts(s, now_utc()))


# --- the service-level report ---------------------------------------------------------------


@bp.get("/reports/service-level")
@requires("supervisor")
def service_level_report():
    rules = rt().rules.current()
    zone = rules.hotline.zone
    bounds = {}
    for name in ("from", "to"):
        raw = request.args.get(name)
        if not raw:
            raise BadRequest(name, "required: a date (2026-11-24, the hotline's midnight) or an ISO time")
        try:
            bounds[name] = reports.parse_bound(raw, zone)
        except ValueError as error:
            raise BadRequest(name, str(error)) from None
    if bounds["from"] >= bounds["to"]:
        raise BadRequest("to", "must be after from")
    queue = request.args.get("queue") or None
    if queue is not None and queue not in rules.queues:
        raise BadRequest("queue", f"one of {', '.join(rules.queues)}")
    by = request.args.get("by", "queue")
    if by not in reports.GROUPINGS:
        raise BadRequest("by", f"one of {', '.join(reports.GROUPINGS)}")
    with db.session(readonly=True) as s:
        rows = reports.service_level(s, bounds["from"], bounds["to"], queue=queue, by=by,  # type: ignore[arg-type]
                                     zone=zone)
    if request.args.get("format") == "csv":
        out = io.StringIO()
        reports.write_csv(rows, out)
        return Response(out.getvalue(), mimetype="text/csv")
    return jsonify(**{"from": iso(bounds["from"]), "to": iso(bounds["to"])}, queue=queue, by=by,
                   zone=zone, rows=rows)


# --- prompt recordings ----------------------------------------------------------------------


@bp.put("/audio/<lang>/<filename>")
@requires("admin")
def upload_audio(lang: str, filename: str):
    if (request.content_length or 0) > audio.MAX_UPLOAD_BYTES:
        raise BadRequest("body", f"larger than {audio.MAX_UPLOAD_BYTES // (1024 * 1024)} MB", 413)
    data = request.get_data()
    try:
        stem = audio.check_name(lang, filename)
        info = audio.check_wav(data)
    except audio.AudioRejected as rejected:
        raise BadRequest(rejected.field, rejected.reason) from None
    replaced = audio.store(lang, stem, data)
    return jsonify(lang=lang, key=stem, url=f"/audio/{lang}/{stem}.wav", seconds=round(info.seconds, 2),
                   sample_rate=info.sample_rate, channels=info.channels), 200 if replaced else 201


@bp.get("/audio/<lang>")
@requires("admin")
def list_audio(lang: str):
    """Which recordings `lang` needs under the current rules, and where each comes from."""
    rules = rt().rules.current()
    if lang not in rules.languages:
        raise BadRequest("lang", f"one of {', '.join(rules.languages)}", 404)
    needed = audio_files(rules, lang)
    files = [{"key": stem, "text": text, "source": audio.source_of(lang, stem)}
             for stem, text in sorted(needed.items())]
    return jsonify(lang=lang, files=files, missing=[f["key"] for f in files if f["source"] is None])
