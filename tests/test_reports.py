"""The service-level report equals the figures counted by hand from a fixed day of card events.

The day: 2026-11-24 in Tallinn (UTC+2), i.e. [2026-11-23T22:00Z, 2026-11-24T22:00Z).

| call | arrives (UTC) | queue   | outcome                                   | survey |
|------|---------------|---------|-------------------------------------------|--------|
| CA1  | 08:05         | support | anna, 2 rings (within 3)                  | 5      |
| CA2  | 08:20         | support | mart, 4 rings (over)                      | 3      |
| CA3  | 09:10         | billing | abandoned while ringing                   |        |
| CA4  | 09:40         | billing | anna, 1 ring (within 4)                   | 4      |
| CA5  | 10:00         | support | nobody answered, voicemail                |        |
| CA6  | 21:30 the 23rd| support | before the day (23:30 local): not counted |        |
| CA7  | 22:30         | billing | after the day (00:30 local): not counted  |        |

Voicemails: support 10:01 due 14:01 handled 12:00 by anna (in time); support 11:00 due 15:00
handled 16:00 by mart (late); billing 11:30 due 19:30 open. Callbacks: support 09:00 due 10:00
completed 09:30 by anna (in time); billing 10:00 due 11:00 completed 12:00 by mart (late).
Complaints: complaints queue 08:30 ack due 09:30 acknowledged 09:00 by liis (in time); 12:00 ack
due 13:00 acknowledged 14:00 by olga (late); an agent's, no queue, 13:00, never acknowledged.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from recordings import card, db, reports

ROOT = Path(__file__).resolve().parent.parent
DAY = ("2026-11-24", "2026-11-25")
SUPER = {"Authorization": "Bearer super-token"}


def t(hhmm: str, day: int = 24) -> datetime:
    hours, minutes = hhmm.split(":")
    return datetime(2026, 11, day, int(hours), int(minutes), tzinfo=UTC)


def write_day() -> None:
    with db.session() as s:
        ids = {n: card.find_or_create_client(s, f"+3725550000{n}")[0].id for n in range(1, 8)}

        def call(n: int, at: datetime, queue: str, *more: tuple[str, dict[str, Any], str | None, int]) -> None:
            sid, client = f"CA{n}", ids[n]
            card.append_event(s, client, "call_arrived", {"language": "et"}, at, sid)
            card.append_event(s, client, "menu_choice", {"digits": "1", "queue": queue}, at + timedelta(seconds=20),
                              sid)
            for kind, data, agent, offset in more:
                card.append_event(s, client, kind, data, at + timedelta(seconds=offset), sid, agent_id=agent,
                                  queue=queue)

        def answered(agent: str, rings: int, target: int) -> tuple[str, dict[str, Any], str, int]:
            return ("call_answered", {"agent": agent, "rings": rings, "seconds": rings * 5.0,
                                      "within_target": rings <= target, "target_rings": target}, agent, 40)

        def survey(score: int, queue: str, agent: str) -> tuple[str, dict[str, Any], str, int]:
            return ("survey_score", {"score": score, "queue": queue, "agent": agent}, agent, 300)

        call(1, t("08:05"), "support", answered("anna", 2, 3), survey(5, "support", "anna"))
        call(2, t("08:20"), "support", answered("mart", 4, 3), survey(3, "support", "mart"),
             ("agent_rung", {"agent": "dmitri", "outcome": "no-answer", "rings": 3}, "dmitri", 30))
        call(3, t("09:10"), "billing", ("call_abandoned", {"queue": "billing", "while": "ringing"}, None, 35))
        call(4, t("09:40"), "billing", answered("anna", 1, 4), survey(4, "billing", "anna"))
        call(5, t("10:00"), "support", ("routed_to_voicemail", {"queue": "support", "reason": "no agent answered"},
                                        None, 60))
        call(6, t("21:30", day=23), "support", answered("anna", 1, 3), survey(1, "support", "anna"))
        call(7, t("22:30"), "billing", answered("anna", 1, 4))

        for sid, client, queue, created, due, handled, by in [
            ("RE1", ids[5], "support", t("10:01"), t("14:01"), t("12:00"), "anna"),
            ("RE2", ids[1], "support", t("11:00"), t("15:00"), t("16:00"), "mart"),
            ("RE3", ids[3], "billing", t("11:30"), t("19:30"), None, None),
        ]:
            vm, _ = card.create_voicemail(s, recording_sid=sid, url=f"https://api.twilio.com/{sid}", due_at=due,
                                          client_id=client, queue=queue, created_at=created)
            if handled:
                card.mark_voicemail_handled(s, vm.id, by=by, at=handled)

        for client, e164, queue, requested, due, completed, agent in [
            (ids[2], "+37255500002", "support", t("09:00"), t("10:00"), t("09:30"), "anna"),
            (ids[3], "+37255500003", "billing", t("10:00"), t("11:00"), t("12:00"), "mart"),
        ]:
            cb, _ = card.request_callback(s, client, e164, queue, at=requested, due_at=due)
            card.complete_callback(s, cb.id, agent_id=agent, at=completed)

        for client, call_sid, complaint_queue, opened, acked, by in [
            (ids[2], "CA2", "complaints", t("08:30"), t("09:00"), "liis"),
            (ids[4], "CA4", "complaints", t("12:00"), t("14:00"), "olga"),
            (ids[4], None, None, t("13:00"), None, None),
        ]:
            row, _ = card.open_complaint(s, client, summary="x", call_sid=call_sid, queue=complaint_queue, at=opened,
                                         ack_within=timedelta(minutes=60))
            if acked:
                card.acknowledge_complaint(s, row.id, by=by, at=acked)


def row(group: str, **figures: Any) -> dict[str, Any]:
    empty: dict[str, Any] = {c: 0 for c in reports.COLUMNS[1:]}
    empty.update(service_level_pct=None, avg_rings_to_answer=None, survey_average=None)
    return {"group": group, **empty, **figures}


BY_QUEUE = [
    row("billing", calls=2, answered=1, answered_within_target=1, service_level_pct=50.0, avg_rings_to_answer=1.0,
        abandoned=1, voicemails=1, callbacks=1, survey_responses=1, survey_average=4.0),
    row("complaints", complaints=2, complaints_acknowledged_in_time=1),
    row("support", calls=3, answered=2, answered_within_target=1, service_level_pct=33.3, avg_rings_to_answer=3.0,
        voicemails=2, voicemails_answered_in_time=1, callbacks=1, callbacks_answered_in_time=1,
        survey_responses=2, survey_average=4.0),
    row("(none)", complaints=1),
    row("total", calls=5, answered=3, answered_within_target=2, service_level_pct=40.0, avg_rings_to_answer=2.33,
        abandoned=1, voicemails=3, voicemails_answered_in_time=1, callbacks=2, callbacks_answered_in_time=1,
        complaints=3, complaints_acknowledged_in_time=1, survey_responses=3, survey_average=4.0),
]


@pytest.fixture
def day(db: str) -> None:
    write_day()


def bounds() -> tuple[datetime, datetime]:
    return reports.parse_bound(DAY[0], "Europe/Tallinn"), reports.parse_bound(DAY[1], "Europe/Tallinn")


def test_by_queue_equals_the_hand_count(day: None) -> None:
    with db.session() as s:
        assert reports.service_level(s, *bounds(), by="queue", zone="Europe/Tallinn") == BY_QUEUE


def test_by_agent_equals_the_hand_count(day: None) -> None:
    with db.session() as s:
        rows = {r["group"]: r for r in reports.service_level(s, *bounds(), by="agent", zone="Europe/Tallinn")}
    assert list(rows) == ["anna", "liis", "mart", "olga", "(none)", "total"]
    assert rows["anna"] == row("anna", calls=2, answered=2, answered_within_target=2, service_level_pct=100.0,
                               avg_rings_to_answer=1.5, voicemails=1, voicemails_answered_in_time=1,
                               callbacks=1, callbacks_answered_in_time=1, survey_responses=2, survey_average=4.5)
    assert rows["mart"] == row("mart", calls=1, answered=1, service_level_pct=0.0, avg_rings_to_answer=4.0,
                               voicemails=1, callbacks=1, survey_responses=1, survey_average=3.0)
    assert rows["liis"] == row("liis", complaints=1, complaints_acknowledged_in_time=1)
    assert rows["(none)"] == row("(none)", calls=2, service_level_pct=0.0, abandoned=1, voicemails=1,
                                 complaints=1)
    assert rows["total"] == BY_QUEUE[-1]


def test_by_hour_uses_the_hotlines_clock(day: None) -> None:
    with db.session() as s:
        rows = {r["group"]: r for r in reports.service_level(s, *bounds(), by="hour", zone="Europe/Tallinn")}
    assert rows["2026-11-24 10:00"] == row("2026-11-24 10:00", calls=2, answered=2, answered_within_target=1,
                                           service_level_pct=50.0, avg_rings_to_answer=3.0, complaints=1,
                                           complaints_acknowledged_in_time=1, survey_responses=2,
                                           survey_average=4.0)
    assert rows["2026-11-24 11:00"]["calls"] == 2 and rows["2026-11-24 11:00"]["abandoned"] == 1
    assert rows["2026-11-24 11:00"]["callbacks"] == 1 and rows["2026-11-24 11:00"]["callbacks_answered_in_time"] == 1
    assert rows["2026-11-24 12:00"]["calls"] == 1 and rows["2026-11-24 12:00"]["voicemails"] == 1
    assert sum(r["calls"] for g, r in rows.items() if g != "total") == 5


def test_one_queue_only(day: None) -> None:
    with db.session() as s:
        rows = reports.service_level(s, *bounds(), queue="support", zone="Europe/Tallinn")
    assert [r["group"] for r in rows] == ["support", "total"]
    assert rows[1] == {**BY_QUEUE[2], "group": "total"}


def test_the_api_answers_the_same_figures_as_json_and_csv(day: None, make_app) -> None:  # type: ignore[no-untyped-def]
    api = make_app().test_client()
    response = api.get(f"/api/reports/service-level?from={DAY[0]}&to={DAY[1]}", headers=SUPER)
    assert response.status_code == 200, response.json
    assert response.json["rows"] == BY_QUEUE
    assert response.json["from"] == "2026-11-23T22:00:00+00:00" and response.json["by"] == "queue"
    as_csv = api.get(f"/api/reports/service-level?from={DAY[0]}&to={DAY[1]}&format=csv", headers=SUPER)
    assert as_csv.mimetype == "text/csv"
    assert list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))[-1]["service_level_pct"] == "40.0"
    assert api.get(f"/api/reports/service-level?from={DAY[0]}&to={DAY[1]}",
                   headers={"Authorization": "Bearer anna-token"}).status_code == 403
    for query, field in [("to=2026-11-25", "from"), ("from=2026-11-24T08:00&to=2026-11-25", "from"),
                         ("from=2026-11-25&to=2026-11-24", "to"), (f"from={DAY[0]}&to={DAY[1]}&by=day", "by"),
                         (f"from={DAY[0]}&to={DAY[1]}&queue=sales", "queue")]:
        bad = api.get(f"/api/reports/service-level?{query}", headers=SUPER)
        assert bad.status_code == 400 and bad.json["field"] == field, query


def test_the_cli_writes_the_same_figures_to_csv(day: None, db: str, tmp_path: Path) -> None:
    from webhooks.cli import main

    out = tmp_path / "sl.csv"
    env = {"DATABASE_URL": db, "HOTLINE_RULES": str(ROOT / "examples" / "rules.yaml"),
           "HOTLINE_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["report", "--from", DAY[0], "--to", DAY[1], "--by", "queue",
                                       "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    expected = [{k: "" if v is None else str(v) for k, v in r.items()} for r in BY_QUEUE]
    assert rows == expected
    bad = CliRunner().invoke(main, ["report", "--from", "yesterday", "--to", DAY[1], "--out", str(out)], env=env)
    assert bad.exit_code != 0 and "use a date" in bad.output
