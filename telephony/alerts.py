"""The periodic overdue check: escalate late complaints, tell the on-duty supervisor once.

`check_overdue` runs as an RQ job every `rules.alerts.check_every_seconds` (it schedules its own
next run; `start_checks` starts the chain when a worker starts, and again if it was lost). Each overdue voicemail
and callback gets one alert row (`recordings.overdue`), a complaint one per missed deadline
(acknowledge, then resolve); delivery is a JSON POST to
`alerts.webhook_url` and an SMS to each of `alerts.sms_to` through Twilio's Messages API, and is
retried on later runs until a channel accepts it. Receivers can de-duplicate by the
`X-Hotline-Alert-Key` header.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from rq import Queue

from recordings import card, db, overdue
from routing_rules.schema import Rules

from . import context
from .dispatch import chain_alive_seconds

log = logging.getLogger("hotline.alerts")

WEBHOOK_TIMEOUT_SECONDS = 5  # a slow receiver must not hold the worker
CHECK_JOB_ID = "hotline-overdue-check"  # one scheduled check at a time, however many workers start
ON_DUTY = ("available", "ringing", "on_call", "wrap_up")


def on_duty_supervisor(rules: Rules) -> dict[str, str] | None:
    """The supervisor to tell: the first on duty (complaints queue order), else any supervisor."""
    queue = rules.complaints_queue()
    ids = list(rules.queues[queue].agents) if queue else []
    ids += [a for a, r in rules.agents.items() if r.supervisor and a not in ids]
    if not ids:
        return None
    snapshots = {s.id: s for s in context.current().state.snapshot(ids, time.time())}
    chosen = next((a for a in ids if snapshots.get(a) and snapshots[a].status in ON_DUTY), ids[0])
    agent = rules.agents[chosen]
    return {"id": chosen, "name": agent.name, "endpoint": agent.endpoint,
            "status": snapshots[chosen].status if chosen in snapshots else "unknown"}


def alert_payload(alert: Any, rules: Rules, supervisor: dict[str, str] | None,
                  now: datetime) -> dict[str, Any]:
    due = alert.due_at if alert.due_at.tzinfo else alert.due_at.replace(tzinfo=UTC)
    return {
        "type": "overdue",
        "key": alert.key,
        "kind": alert.kind,
        "stage": overdue.alert_stage(alert.key),  # a complaint's missed deadline, else None
        "id": alert.item_id,
        "client_id": alert.client_id,
        "queue": alert.queue,
        "due_at": due.isoformat(),
        "overdue_minutes": max(0, int((now - due).total_seconds() // 60)),
        "company": rules.company,
        "supervisor": supervisor,
    }


def sms_text(payload: dict[str, Any]) -> str:
    where = f" in {payload['queue']}" if payload["queue"] else ""
    client = f", client {payload['client_id']}" if payload["client_id"] else ""
    stage = f" to {payload['stage']}" if payload.get("stage") else ""
    return (f"{payload['company']}: {payload['kind']} {payload['id']}{where}{client} is "
            f"{payload['overdue_minutes']} min overdue{stage}.")


def deliver(payload: dict[str, Any], rules: Rules) -> str | None:
    """Send one alert on every configured channel; None when one accepted it, else the error."""
    errors: list[str] = []
    delivered = False
    alerts = rules.alerts
    if alerts.webhook_url:
        try:
            response = requests.post(alerts.webhook_url, json=payload, timeout=WEBHOOK_TIMEOUT_SECONDS,
                                     headers={"X-Hotline-Alert-Key": payload["key"]})
            response.raise_for_status()
            delivered = True
        except requests.RequestException as error:
            errors.append(f"webhook: {error}")
    for number in alerts.sms_to:
        try:
            context.current().twilio.messages.create(to=number, from_=rules.hotline.numbers[0],
                                                     body=sms_text(payload))
            delivered = True
        except Exception as error:  # noqa: BLE001 - any Twilio fault: try again next run
            errors.append(f"sms {number}: {error}")
    if delivered or not (alerts.webhook_url or alerts.sms_to):
        return None  # no channel configured: the alert lives on the dashboard and in /metrics
    return "; ".join(errors)


def check_overdue(now_iso: str | None = None) -> dict[str, int]:
    """Escalate overdue complaints (once per missed deadline), record an alert per overdue item
    once (only items without one are read: the work follows what is new), deliver unsent ones."""
    ctx = context.current()
    rules = ctx.current_rules()
    now = datetime.fromisoformat(now_iso) if now_iso else datetime.now(UTC)
    with db.session() as s:
        escalated = card.escalate_overdue_complaints(s, now)
        created = overdue.record_alerts(s, overdue.items_to_alert(s, now), now)
        to_send = overdue.claim_unsent(s, now)
        for row in to_send:
            s.expunge(row)
    supervisor = on_duty_supervisor(rules) if to_send else None
    sent = 0
    for row in to_send:
        error = deliver(alert_payload(row, rules, supervisor, now), rules)
        with db.session() as s:
            if error is None:
                overdue.mark_sent(s, row.id, now, supervisor["id"] if supervisor else None)
                sent += 1
            else:
                log.warning("alert %s not delivered: %s", row.key, error)
                overdue.mark_failed(s, row.id, error)
    return {"escalated": len(escalated), "alerts": len(created), "sent": sent}


def _slot_job_id(queue_name: str, at: float, every: int) -> str:
    """One job id per interval: chains started by several workers converge on one job."""
    return context.job_id(queue_name, f"{CHECK_JOB_ID}-{int(at // every)}")


def check_and_reschedule(queue_name: str) -> dict[str, int]:
    """The periodic job: check now, then schedule the next check (needs the RQ scheduler)."""
    from rq import get_current_job

    try:
        ctx = context.current()
        ctx.state.note_periodic(CHECK_JOB_ID, chain_alive_seconds(ctx.current_rules().alerts.check_every_seconds))
        return check_overdue()
    finally:
        job = get_current_job()
        if job is not None:
            every = context.current().current_rules().alerts.check_every_seconds
            Queue(queue_name, connection=job.connection).enqueue_in(
                timedelta(seconds=every), check_and_reschedule, queue_name,
                job_id=_slot_job_id(queue_name, time.time() + every, every))


def start_checks(queue: Queue, every_seconds: int = 60) -> bool:
    """Start the periodic chain unless it is alive; True if started (as `dispatch.start_ticks`:
    a worker calls this at start and then every few seconds; of several asking at once, one
    starts it)."""
    if not context.current().state.start_periodic(CHECK_JOB_ID, chain_alive_seconds(every_seconds)):
        return False
    queue.enqueue(check_and_reschedule, queue.name, job_id=_slot_job_id(queue.name, time.time(), every_seconds))
    return True
