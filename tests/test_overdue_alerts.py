"""Overdue work is escalated and reported to the on-duty supervisor once, by a real HTTP POST."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from recordings import card, db, overdue
from recordings.models import Alert, Complaint, Voicemail
from telephony import alerts
from telephony.context import job_id
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, Voice, always_open_rules

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CALLER = "+37255512345"


class Receiver:
    """A local webhook receiver that records what it is sent; `status` is what it answers."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.received.append({"path": self.path, "key": self.headers.get("X-Hotline-Alert-Key"),
                                          "json": json.loads(self.rfile.read(length))})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/hotline"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def rules_with_alerts(example_rules_text: str, **alert_rules: Any) -> str:
    data = yaml.safe_load(always_open_rules(example_rules_text))
    data["alerts"] = alert_rules
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@pytest.fixture
def app_with_receiver(make_app, example_rules_text: str, receiver: Receiver):  # type: ignore[no-untyped-def]
    return make_app(rules_with_alerts(example_rules_text, webhook_url=receiver.url))


def open_items(now: datetime) -> dict[str, int]:
    """An open complaint (ack due in 60 min), a voicemail due in 4 h, a callback due in 2 h."""
    with db.session() as s:
        client, _ = card.find_or_create_client(s, CALLER)
        complaint, _ = card.open_complaint(s, client.id, summary="wrong bill", queue="complaints", by="ivr",
                                           at=now, ack_within=timedelta(minutes=60),
                                           resolve_within=timedelta(hours=72))
        vm, _ = card.create_voicemail(s, recording_sid="RE" + "a" * 32, url="https://api.twilio.com/r/1",
                                      due_at=now + timedelta(hours=4), client_id=client.id, queue="support",
                                      created_at=now)
        cb, _ = card.request_callback(s, client.id, CALLER, "billing", at=now, due_at=now + timedelta(hours=2))
        return {"complaint": complaint.id, "voicemail": vm.id, "callback": cb.id, "client": client.id}


def test_overdue_complaint_is_escalated_and_the_supervisor_told_once(app_with_receiver, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    ids = open_items(NOW)
    with app_with_receiver.app_context():
        assert alerts.check_overdue((NOW + timedelta(minutes=59)).isoformat())["alerts"] == 0
        late = NOW + timedelta(minutes=61)
        result = alerts.check_overdue(late.isoformat())
        assert result == {"escalated": 1, "alerts": 1, "sent": 1}
        assert alerts.check_overdue((late + timedelta(minutes=5)).isoformat())["sent"] == 0
    (sent,) = receiver.received
    assert sent["key"] == f"complaint:{ids['complaint']}:overdue"
    body = sent["json"]
    assert body["kind"] == "complaint" and body["id"] == ids["complaint"] and body["client_id"] == ids["client"]
    assert body["due_at"] == (NOW + timedelta(minutes=60)).isoformat() and body["overdue_minutes"] == 1
    assert body["supervisor"]["id"] == "liis"  # olga is off duty (available_by_default: false)
    with db.session() as s:
        complaint = s.get(Complaint, ids["complaint"])
        assert complaint is not None and complaint.escalated_at == late
        escalated = [e for e in card.timeline(s, ids["client"])[0] if e.kind == "complaint_escalated"]
        assert [e.data["missed"] for e in escalated] == ["acknowledge"]
        (alert,) = s.query(Alert).all()
        assert alert.sent_at == late and alert.supervisor == "liis" and alert.attempts == 1


def test_every_overdue_kind_is_alerted_once_through_the_worker(app_with_receiver, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    ids = open_items(NOW)
    voice = Voice(app_with_receiver)
    runtime = app_with_receiver.extensions["hotline"]
    later = (NOW + timedelta(hours=5)).isoformat()
    for _ in range(3):  # three periodic runs, as if on three workers
        runtime.enqueue(alerts.check_overdue, later)
    voice.run_jobs()
    keys = sorted(r["key"] for r in receiver.received)
    assert keys == sorted([f"complaint:{ids['complaint']}:overdue", f"voicemail:{ids['voicemail']}:overdue",
                           f"callback:{ids['callback']}:overdue"])
    with db.session() as s:
        counts = overdue.overdue_counts(s, NOW + timedelta(hours=5))
    assert counts == {"voicemails": 1, "callbacks": 1, "complaints": 1, "alerts_unsent": 0}


def test_handled_work_is_not_overdue(app_with_receiver, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    ids = open_items(NOW)
    with db.session() as s:
        card.acknowledge_complaint(s, ids["complaint"], by="liis", at=NOW + timedelta(minutes=10))
        card.mark_voicemail_handled(s, ids["voicemail"], by="anna", at=NOW + timedelta(hours=1))
        card.complete_callback(s, ids["callback"], agent_id="kasia", at=NOW + timedelta(minutes=30))
    with app_with_receiver.app_context():
        assert alerts.check_overdue((NOW + timedelta(hours=5)).isoformat()) == {"escalated": 0, "alerts": 0,
                                                                                "sent": 0}
    assert receiver.received == []


def test_a_failed_delivery_is_retried_later_and_then_sent_once(app_with_receiver, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    open_items(NOW)
    receiver.status = 500
    first = NOW + timedelta(minutes=61)
    with app_with_receiver.app_context():
        assert alerts.check_overdue(first.isoformat())["sent"] == 0
        with db.session() as s:
            (alert,) = s.query(Alert).all()
            assert alert.sent_at is None and alert.attempts == 1 and "500" in (alert.last_error or "")
            assert overdue.overdue_counts(s, first)["alerts_unsent"] == 1
        receiver.status = 200
        assert alerts.check_overdue((first + timedelta(seconds=30)).isoformat())["sent"] == 0  # spaced retries
        assert alerts.check_overdue((first + timedelta(minutes=3)).isoformat())["sent"] == 1
        assert alerts.check_overdue((first + timedelta(minutes=9)).isoformat())["sent"] == 0
    assert [r["json"]["kind"] for r in receiver.received] == ["complaint", "complaint"]  # 500, then 200


class RecordingTwilioHttp(HttpClient):
    """Answers Twilio's Messages API like Twilio does (201) and keeps each request."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("tests.twilio"), False)
        self.requests: list[dict[str, Any]] = []

    def request(self, method: str, url: str, params: Any = None, data: Any = None, headers: Any = None,
                auth: Any = None, timeout: Any = None, allow_redirects: bool = False) -> Response:
        self.requests.append({"method": method, "url": url, "data": dict(data or {})})
        return Response(201, json.dumps({"sid": "SM" + "0" * 32, "status": "queued"}))


def test_sms_goes_through_twilios_messages_api_when_configured(make_app, example_rules_text: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(rules_with_alerts(example_rules_text, sms_to=["+37252345678"]))
    http = RecordingTwilioHttp()
    app.extensions["hotline"]._twilio = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)
    ids = open_items(NOW)
    with app.app_context():
        assert alerts.check_overdue((NOW + timedelta(minutes=61)).isoformat())["sent"] == 1
    (sms,) = http.requests
    assert sms["method"] == "POST" and sms["url"].endswith(f"/Accounts/{ACCOUNT_SID}/Messages.json")
    assert sms["data"]["To"] == "+37252345678" and sms["data"]["From"] == "+3726140000"
    assert f"complaint {ids['complaint']} in complaints" in sms["data"]["Body"]


def test_alert_rules_are_validated(example_rules_text: str) -> None:
    from routing_rules.loading import check_rules

    errors = check_rules(rules_with_alerts(example_rules_text, webhook_url="ftp://x", sms_to=["5551234"],
                                           check_every_seconds=1))
    assert sorted(e.path for e in errors) == ["alerts.check_every_seconds", "alerts.sms_to.0",
                                              "alerts.webhook_url"]


def test_the_check_schedules_its_next_run_once_per_interval(app_with_receiver) -> None:  # type: ignore[no-untyped-def]
    from rq.registry import ScheduledJobRegistry

    runtime = app_with_receiver.extensions["hotline"]
    assert alerts.start_checks(runtime.jobs, 60)
    assert not alerts.start_checks(runtime.jobs, 60)  # a second worker starting: the chain is alive
    Voice(app_with_receiver).run_jobs()
    scheduled = ScheduledJobRegistry(queue=runtime.jobs).get_job_ids()
    assert len(scheduled) == 1 and scheduled[0].startswith(job_id(runtime.jobs.name, alerts.CHECK_JOB_ID))


# --- a run reads the new overdue work, not every overdue item ever -------------------------------


class Reads:
    """Counts, while installed, the rows every ORM SELECT returns and the most parameters any
    statement binds (psycopg refuses more than 65,535 in one statement)."""

    def __init__(self) -> None:
        self.rows = 0
        self.most_parameters = 0

    def on_select(self, state: Any) -> Any:
        if not state.is_select:
            return None
        frozen = state.invoke_statement().freeze()
        self.rows += len(frozen.data)
        return frozen()

    def on_statement(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                     executemany: bool) -> None:
        if not executemany and parameters:
            self.most_parameters = max(self.most_parameters, len(parameters))

    def __enter__(self) -> Reads:
        sa.event.listen(Session, "do_orm_execute", self.on_select)
        sa.event.listen(db.engine(), "before_cursor_execute", self.on_statement)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(Session, "do_orm_execute", self.on_select)
        sa.event.remove(db.engine(), "before_cursor_execute", self.on_statement)


def overdue_voicemails(client_id: int, count: int, first: int, due_at: datetime) -> list[int]:
    with db.session() as s:
        rows = [{"recording_sid": f"RE{n:032d}", "url": f"https://api.twilio.com/r/{n}", "client_id": client_id,
                 "queue": "support", "created_at": due_at - timedelta(hours=4), "due_at": due_at, "status": "open"}
                for n in range(first, first + count)]
        s.execute(sa.insert(Voicemail), rows)
        return list(s.scalars(sa.select(Voicemail.id).where(Voicemail.recording_sid.in_(
            [r["recording_sid"] for r in rows])).order_by(Voicemail.id)))


def test_a_check_reads_only_the_overdue_items_not_alerted_yet(app_with_receiver, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        client_id = card.find_or_create_client(s, CALLER)[0].id
    old = overdue_voicemails(client_id, 300, 0, NOW - timedelta(days=30))
    with db.session() as s:  # alerted and sent long ago, still open
        s.execute(sa.insert(Alert), [{"key": f"voicemail:{i}:overdue", "kind": "voicemail", "item_id": i,
                                      "client_id": client_id, "queue": "support", "due_at": NOW - timedelta(days=30),
                                      "created_at": NOW - timedelta(days=30), "sent_at": NOW - timedelta(days=30),
                                      "attempts": 1} for i in old])
    new = overdue_voicemails(client_id, 2, 1000, NOW - timedelta(minutes=5))

    with app_with_receiver.app_context(), Reads() as reads:
        assert alerts.check_overdue(NOW.isoformat()) == {"escalated": 0, "alerts": 2, "sent": 2}

    assert sorted(r["key"] for r in receiver.received) == sorted(f"voicemail:{i}:overdue" for i in new)
    # rows: the two new items and their alerts, claimed and re-read, never the 300 alerted ones;
    # parameters: at most an alert row's columns, never one per overdue item
    assert reads.rows <= 10 and reads.most_parameters <= 20
    with db.session() as s:
        assert overdue.overdue_counts(s, NOW)["voicemails"] == 302


def test_a_backlog_of_overdue_items_is_alerted_a_page_at_a_time_oldest_first(app_with_receiver) -> None:  # type: ignore[no-untyped-def]
    ids = open_items(NOW)
    with db.session() as s:
        client_id = card.find_or_create_client(s, CALLER)[0].id
    older = overdue_voicemails(client_id, 2, 2000, NOW + timedelta(minutes=30))
    late = NOW + timedelta(hours=5)  # complaint (+60 min), older voicemails (+30 min), callback (+2 h), voicemail (+4 h)
    with db.session() as s:
        card.escalate_overdue_complaints(s, late)
        pages = []
        while page := overdue.items_to_alert(s, late, limit=2):
            pages.append([item.key for item in page])
            overdue.record_alerts(s, page, late)
    assert pages == [[f"voicemail:{older[0]}:overdue", f"voicemail:{older[1]}:overdue"],
                     [f"complaint:{ids['complaint']}:overdue", f"callback:{ids['callback']}:overdue"],
                     [f"voicemail:{ids['voicemail']}:overdue"]]
