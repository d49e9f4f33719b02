"""Rules pages: view, edit (checked before anything is saved), versions with diffs, roll back, explain.

Saving goes through `api.write_rules`, the same path as `PUT /api/rules`, and records a
`RulesVersion`. The first console save also records the file as it was, so it can be restored.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from recordings import db, rules_versions
from routing_rules import explain as explain_mod
from routing_rules.loading import RulesReview, review_rules

from .. import api, caller_cards
from ..voice import line_status
from . import bp
from .auth import role_required, rt, user

FIRST_VERSION_BY = "file"  # author of the version recorded from the file before the first save


def current_text() -> str:
    return rt().settings.rules_path.read_text(encoding="utf-8")


def save_rules(text: str, by: str, comment: str | None) -> tuple[int | None, RulesReview]:
    """Check, then save and make live: (version id, review), or (None, review) with nothing
    saved when the review has errors. Warnings never stop a save; the caller shows them."""
    review = review_rules(text)
    if not review.ok:
        return None, review
    with db.session() as s:
        if not rules_versions.has_versions(s):
            rules_versions.record_version(s, current_text(), FIRST_VERSION_BY,
                                          "the rules file before the first save from the console")
        version = rules_versions.record_version(s, text, by, comment)
        api.write_rules(text)  # inside the unit of work: a failed write records no version
        return version.id, review


def flash_warnings(review: RulesReview) -> None:
    """The saved rules' warnings, shown on the page the save redirects to."""
    for warning in review.warnings:
        flash(f"Warning: {warning.path}: {warning.message}", "warning")


@bp.get("/rules")
@role_required("supervisor")
def rules_view() -> Any:
    with db.session(readonly=True) as s:
        versions = rules_versions.list_versions(s)
    return render_template("rules.html", text=current_text(), versions=versions)


@bp.route("/rules/edit", methods=["GET", "POST"])
@role_required("admin")
def rules_edit() -> Any:
    if request.method == "GET":
        text = current_text()  # the live rules' warnings show before any edit
        return render_template("rules_edit.html", text=text, errors=[],
                               warnings=review_rules(text).warnings, comment="")
    text = request.form.get("text", "").replace("\r\n", "\n")
    comment = request.form.get("comment", "").strip()
    if request.form.get("action") == "check":
        review = review_rules(text)
        if review.ok:
            flash("The rules are valid. Nothing was saved yet.")
        page = render_template("rules_edit.html", text=text, errors=review.errors,
                               warnings=review.warnings, comment=comment)
        return page, (200 if review.ok else 422)
    version_id, review = save_rules(text, user().name, comment)
    if not review.ok:
        return render_template("rules_edit.html", text=text, errors=review.errors,
                               warnings=review.warnings, comment=comment), 422
    flash(f"Saved as version {version_id}. The new rules are live.")
    flash_warnings(review)
    return redirect(url_for("console.rules_view"))


@bp.get("/rules/versions/<int:version_id>")
@role_required("supervisor")
def rules_version(version_id: int) -> Any:
    with db.session(readonly=True) as s:
        version = rules_versions.get_version(s, version_id)
        if version is None:
            abort(404, f"No rules version {version_id}.")
        previous = rules_versions.previous_version(s, version_id)
    before_name = f"version {previous.id}" if previous else "nothing"
    changes = rules_versions.diff(previous.text if previous else "", version.text, before_name,
                                  f"version {version.id}")
    to_current = rules_versions.diff(version.text, current_text(), f"version {version.id}", "live rules")
    return render_template("rules_version.html", version=version, previous=previous, changes=changes,
                           to_current=to_current)


@bp.post("/rules/versions/<int:version_id>/rollback")
@role_required("admin")
def rules_rollback(version_id: int) -> Any:
    with db.session(readonly=True) as s:
        version = rules_versions.get_version(s, version_id)
        if version is None:
            abort(404, f"No rules version {version_id}.")
        text = version.text
    new_id, review = save_rules(text, user().name, f"roll back to version {version_id}")
    if not review.ok:  # e.g. an agent was removed since: edit it instead
        return render_template("rules_edit.html", text=text, errors=review.errors,
                               warnings=review.warnings,
                               comment=f"roll back to version {version_id}"), 422
    flash(f"Rolled back to version {version_id} (saved as version {new_id}).")
    flash_warnings(review)
    return redirect(url_for("console.rules_view"))


# --- explain ----------------------------------------------------------------------------------


def parse_local(value: str, zone: Any) -> datetime | None:
    """`2026-11-24T10:00` from a datetime-local field, read as the hotline's wall clock."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed


@bp.get("/rules/explain")
@role_required("supervisor")
def rules_explain() -> Any:
    from routing_rules import engine
    from telephony import numbers

    rules = rt().rules.current()
    zone = engine.zone(rules)
    args = request.args
    form = {"phone": args.get("phone", ""), "at": args.get("at", ""), "digits": args.get("digits", "")}
    if not form["at"]:
        form["at"] = datetime.now(zone).strftime("%Y-%m-%dT%H:%M")
    if "digits" not in args:
        return render_template("explain.html", form=form, result=None, error=None)
    at = parse_local(form["at"], zone)
    e164 = numbers.normalize(form["phone"], rules.hotline.country) if form["phone"] else None
    error = None
    if at is None:
        error = "The time is not a date and time like 2026-11-24T10:00."
    elif form["phone"] and e164 is None:
        error = f"{form['phone']!r} is not a valid phone number."
    elif not all(ch.isdigit() or ch in "*#" for ch in form["digits"]):
        error = "Menu digits are keys 0-9, * and #."
    if error:
        return render_template("explain.html", form=form, result=None, error=error), 400
    assert at is not None
    card = caller_cards.lookup(e164)
    state = rt().state
    now = time.time()
    loads = {}
    for queue in rules.queues:
        position, wait, free = line_status(rules, queue, "console-explain", now)
        loads[queue] = explain_mod.QueueLoad(state.line_length(queue), position, wait, free)
    call = explain_mod.CallInput(
        at=at.astimezone(UTC), e164=e164, caller_country=numbers.country_of(e164) if e164 else None,
        card_language=card.language if card else None, last_agent=state.last_agent(e164) if e164 else None,
        digits=form["digits"],
    )
    result = explain_mod.explain_call(rules, call, state.snapshot(list(rules.agents), now), loads)
    return render_template("explain.html", form=form, result=result, error=None, card=card, e164=e164)
