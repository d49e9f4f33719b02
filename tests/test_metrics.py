"""`/metrics`: every figure the issue names, read from Redis and SQL at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from recordings import card, db
from tests.conftest import Voice

ADMIN = {"Authorization": "Bearer admin-token"}


def scrape(voice: Voice) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = voice.client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_needs_a_bearer_token_of_any_role(voice: Voice) -> None:
    assert voice.client.get("/metrics").status_code == 401
    assert voice.client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert voice.client.get("/metrics", headers={"Authorization": "Bearer anna-token"}).status_code == 200


def test_metrics_show_live_state_tallies_and_latency(voice: Voice) -> None:
    call = {"CallSid": "CAm1", "From": "+3725550001", "To": "+3726140000", "CallStatus": "ringing",
            "AccountSid": "AC" + "0" * 32, "Direction": "inbound"}
    for path, params in (("/voice/incoming", call), ("/voice/menu", {**call, "Digits": "1"})):
        response = voice.post(path, params)
        assert response.status_code == 200
    voice.run_jobs()
    now = datetime.now(UTC)
    with db.session() as s:
        client, _ = card.find_or_create_client(s, "+3725550002")
        card.append_event(s, client.id, "call_answered", {"rings": 2}, now, "CAx")
        card.append_event(s, client.id, "outbound_blocked", {"reason": "outside_hours"}, now)
    samples = scrape(voice)
    assert samples[("hotline_calls_total", (("outcome", "arrived"),))] == 1
    assert samples[("hotline_rings_to_answer_bucket", (("le", "2.0"),))] == 1
    assert samples[("hotline_rings_to_answer_bucket", (("le", "1.0"),))] == 0
    assert samples[("hotline_blocked_dials_total", (("reason", "outside_hours"),))] == 1
    assert samples[("hotline_agents", (("status", "ringing"),))] == 1  # the menu choice dialled one
    assert ("hotline_waiting_calls", (("queue", "support"),)) in samples
    assert samples[("hotline_overdue", (("kind", "voicemail"),))] == 0
    assert samples[("hotline_request_duration_seconds_count", (("endpoint", "voice.incoming"),))] == 1
    assert samples[("hotline_metrics_source_up", (("source", "database"),))] == 1
    assert samples[("hotline_metrics_source_up", (("source", "redis"),))] == 1
    assert samples[("hotline_card_events_waiting", ())] == 0  # run_jobs applied them all
    voice.post("/voice/status", {**call, "CallStatus": "completed", "SequenceNumber": "9"})
    assert scrape(voice)[("hotline_card_events_waiting", ())] >= 1  # queued, not yet applied
    voice.run_jobs()
    assert scrape(voice)[("hotline_card_events_waiting", ())] == 0
