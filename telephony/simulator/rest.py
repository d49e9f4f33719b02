"""The REST subset at `TWILIO_API_BASE`: Calls create/update/fetch/list, Recordings.

Validation and error bodies follow Twilio (`{"code", "message", "more_info", "status"}`),
so the product's error handling is exercised by the real `twilio.rest.Client`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

from .calls import API_VERSION, CallLeg, Recording
from .core import STATUS_EVENTS
from .media import wav_bytes

if TYPE_CHECKING:
    from .core import Simulator

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
BASE = f"/{API_VERSION}/Accounts/<account_sid>"


class RestError(Exception):
    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _error(code: int, message: str, status: int) -> Response:
    body = {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    resp = jsonify(body)
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    return resp


def _valid_to(value: str) -> bool:
    return bool(E164.match(value)) or value.startswith(("client:", "sip:"))


def _valid_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def call_json(sim: Simulator, leg: CallLeg) -> dict[str, Any]:
    """Twilio's Call resource shape (api.v2010.account.call)."""
    clock = sim.clock
    uri = f"/{API_VERSION}/Accounts/{leg.account_sid}/Calls/{leg.sid}.json"
    started = leg.status not in ("queued",)
    return {
        "sid": leg.sid,
        "date_created": clock.rfc2822(leg.created_t),
        "date_updated": clock.rfc2822(leg.end_t if leg.end_t is not None else leg.t),
        "parent_call_sid": leg.parent_sid,
        "account_sid": leg.account_sid,
        "to": leg.to,
        "to_formatted": leg.to,
        "from": leg.from_,
        "from_formatted": leg.from_,
        "phone_number_sid": None,
        "status": leg.status,
        "start_time": clock.rfc2822(leg.created_t) if started else None,
        "end_time": clock.rfc2822(leg.end_t) if leg.end_t is not None else None,
        "duration": str(leg.duration) if leg.end_t is not None else None,
        "price": None,
        "price_unit": "USD",
        "direction": leg.direction,
        "answered_by": None,
        "api_version": API_VERSION,
        "forwarded_from": None,
        "group_sid": None,
        "caller_name": None,
        "queue_time": str(leg.queue_time),
        "trunk_sid": None,
        "uri": uri,
        "subresource_uris": {
            "recordings": uri.replace(".json", "/Recordings.json"),
            "notifications": uri.replace(".json", "/Notifications.json"),
            "events": uri.replace(".json", "/Events.json"),
        },
    }


def recording_json(sim: Simulator, rec: Recording) -> dict[str, Any]:
    uri = f"/{API_VERSION}/Accounts/{rec.account_sid}/Recordings/{rec.sid}.json"
    return {
        "account_sid": rec.account_sid,
        "api_version": API_VERSION,
        "call_sid": rec.call_sid,
        "conference_sid": None,
        "date_created": sim.clock.rfc2822(rec.start_t),
        "date_updated": sim.clock.rfc2822(rec.start_t + rec.duration),
        "start_time": sim.clock.rfc2822(rec.start_t),
        "duration": str(rec.duration),
        "sid": rec.sid,
        "price": None,
        "price_unit": "USD",
        "status": rec.status,
        "channels": rec.channels,
        "source": rec.source,
        "error_code": None,
        "uri": uri,
        "encryption_details": None,
        "subresource_uris": {},
        "media_url": sim.recording_url(rec.sid),
    }


def create_sim_app(sim: Simulator) -> Flask:
    """The Flask app of the simulated REST API; one per `Simulator`."""
    app = Flask("twilio_simulator")

    @app.errorhandler(RestError)
    def _rest_error(exc: RestError) -> Response:
        return _error(exc.code, exc.message, exc.status)

    def authorize(account_sid: str) -> None:
        auth = request.authorization
        if auth is None or auth.username != sim.account_sid or auth.password != sim.auth_token:
            raise RestError(20003, "Authenticate", 401)
        if account_sid != sim.account_sid:
            raise RestError(20404, f"The requested resource {request.path} was not found", 404)

    def find_call(sid: str) -> CallLeg:
        leg = sim.call(sid)
        if leg is None:
            raise RestError(20404, f"The requested resource {request.path} was not found", 404)
        return leg

    @app.post(f"{BASE}/Calls.json")
    def create_call(account_sid: str) -> tuple[Response, int]:
        authorize(account_sid)
        form = request.form
        to, from_ = form.get("To", ""), form.get("From", "")
        url, twiml = form.get("Url"), form.get("Twiml")
        if not to:
            raise RestError(21201, "No 'To' number is specified")
        if not from_:
            raise RestError(21213, "No 'From' number is specified")
        if not _valid_to(to):
            raise RestError(21211, f"Invalid 'To' Phone Number: {to}")
        if not (E164.match(from_) or from_.startswith("client:")):
            raise RestError(21212, f"Invalid 'From' Phone Number: {from_}")
        if not url and not twiml and not form.get("ApplicationSid"):
            raise RestError(21205, "Url parameter is required")
        if url and not _valid_url(url):
            raise RestError(21205, f"Url is not a valid URL: {url}")
        method = form.get("Method", "POST").upper()
        if method not in ("GET", "POST"):
            raise RestError(21207, f"Method is not valid: {method}")
        timeout_raw = form.get("Timeout", "60")
        try:
            timeout = int(timeout_raw)
        except ValueError:
            raise RestError(21208, f"Timeout is not valid: {timeout_raw}") from None
        if not 1 <= timeout <= 600:
            raise RestError(21208, f"Timeout must be between 1 and 600: {timeout_raw}")
        callback = form.get("StatusCallback")
        if callback and not _valid_url(callback):
            raise RestError(21609, f"StatusCallback is not a valid URL: {callback}")
        events = [e for raw in form.getlist("StatusCallbackEvent") for e in raw.split()]
        bad = [e for e in events if e not in STATUS_EVENTS]
        if bad:
            raise RestError(21626, f"StatusCallbackEvent is not valid: {bad[0]}")
        rec_events = [e for raw in form.getlist("RecordingStatusCallbackEvent")
                      for e in raw.split()] or ["completed"]
        leg = sim.create_call(
            to, from_, url=url or None, twiml=None if url else twiml, method=method,
            status_callback=callback, status_callback_events=events or ["completed"],
            status_callback_method=form.get("StatusCallbackMethod", "POST"),
            timeout=timeout, record=form.get("Record", "false").lower() == "true",
            recording_status_callback=form.get("RecordingStatusCallback"),
            recording_status_callback_method=form.get("RecordingStatusCallbackMethod", "POST"),
            recording_status_callback_events=rec_events,
            fallback_url=form.get("FallbackUrl"),
            fallback_method=form.get("FallbackMethod", "POST"),
        )
        return jsonify(call_json(sim, leg)), 201

    @app.get(f"{BASE}/Calls.json")
    def list_calls(account_sid: str) -> Response:
        authorize(account_sid)
        legs = list(sim.legs.values())
        for key, attr in (("Status", "status"), ("To", "to"), ("From", "from_"),
                          ("ParentCallSid", "parent_sid")):
            if request.args.get(key):
                legs = [leg for leg in legs if getattr(leg, attr) == request.args[key]]
        uri = request.full_path.rstrip("?")
        return jsonify({
            "calls": [call_json(sim, leg) for leg in reversed(legs)],
            "first_page_uri": uri, "next_page_uri": None, "previous_page_uri": None,
            "page": 0, "page_size": len(legs), "start": 0, "end": max(0, len(legs) - 1),
            "uri": uri,
        })

    @app.get(f"{BASE}/Calls/<call_sid>.json")
    def fetch_call(account_sid: str, call_sid: str) -> Response:
        authorize(account_sid)
        return jsonify(call_json(sim, find_call(call_sid)))

    @app.post(f"{BASE}/Calls/<call_sid>.json")
    def update_call(account_sid: str, call_sid: str) -> Response:
        authorize(account_sid)
        leg = find_call(call_sid)
        form = request.form
        status = form.get("Status")
        url, twiml = form.get("Url"), form.get("Twiml")
        if status is not None and status not in ("completed", "canceled"):
            raise RestError(21218, f"Invalid Status: {status}")
        if status is None and not url and not twiml:
            raise RestError(21205, "Url parameter is required")
        if url and not _valid_url(url):
            raise RestError(21205, f"Url is not a valid URL: {url}")
        if status is None and leg.ended:
            raise RestError(21220, "Call is not in-progress. Cannot redirect.")
        sim.update_call(call_sid, url=url, method=form.get("Method", "POST"), twiml=twiml,
                        status=status)
        return jsonify(call_json(sim, leg))

    def find_recording(sid: str) -> Recording:
        rec = sim.recordings.get(sid)
        if rec is None:
            raise RestError(20404, f"The requested resource {request.path} was not found", 404)
        return rec

    @app.get(f"{BASE}/Recordings/<recording_sid>.json")
    def fetch_recording(account_sid: str, recording_sid: str) -> Response:
        authorize(account_sid)
        return jsonify(recording_json(sim, find_recording(recording_sid)))

    @app.get(f"{BASE}/Recordings/<recording_sid>.wav")
    @app.get(f"{BASE}/Recordings/<recording_sid>")
    def recording_media(account_sid: str, recording_sid: str) -> Response:
        # Media is public by default on Twilio (unless "enforce HTTP auth" is on).
        rec = find_recording(recording_sid)
        return Response(wav_bytes(rec.duration, rec.channels), mimetype="audio/x-wav")

    @app.get(f"{BASE}/Recordings/<recording_sid>.mp3")
    def recording_mp3(account_sid: str, recording_sid: str) -> Response:
        find_recording(recording_sid)
        return _error(20404, "The simulator serves recordings as .wav only", 404)

    return app


@dataclass
class SimServer:
    """A served simulator: `url` is the value for TWILIO_API_BASE."""

    server: BaseWSGIServer
    thread: threading.Thread
    url: str

    def shutdown(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def serve(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    server = make_server(host, port, create_sim_app(sim), threaded=True)
    url = f"http://{host}:{server.server_port}"
    sim.api_base = url
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True, name="twilio-sim-rest")
    thread.start()
    return SimServer(server, thread, url)
