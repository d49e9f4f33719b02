"""`hotline ...`: the console command (serve, worker, demo, simulate, rules, screen, db, report)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from .settings import from_env


class HotlineGroup(click.Group):
    """Turns the faults a person can fix (a setting, a file, a missing schema) into one clear
    line instead of a traceback; anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> object:
        import sqlalchemy.exc
        import yaml

        from routing_rules.loading import RulesInvalid

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except RulesInvalid as error:
            lines = "\n".join(f"  {e.path}: {e.message}" for e in error.errors)
            raise click.ClickException(f"the rules file has errors:\n{lines}") from None
        except FileNotFoundError as error:
            raise click.ClickException(f"{error.filename}: no such file") from None
        except IsADirectoryError as error:
            raise click.ClickException(f"{error.filename}: is a directory, not a file") from None
        except UnicodeDecodeError:
            raise click.ClickException("an input file is not UTF-8 text") from None
        except yaml.YAMLError as error:
            raise click.ClickException(f"not valid YAML: {error}") from None
        except sqlalchemy.exc.OperationalError as error:
            if "no such table" in str(error) or "does not exist" in str(error):
                raise click.ClickException("the card store has no schema yet: run `hotline db upgrade`") from None
            raise click.ClickException(f"cannot reach the card store: {error.orig}") from None
        except OverflowError:
            raise click.ClickException("a date or time is out of range (use years 2000 to 2100)") from None
        except ValueError as error:
            if str(error).startswith(("HOTLINE_", "REDIS_", "DATABASE_", "TWILIO_", "PUBLIC_")):
                raise click.ClickException(str(error)) from None  # a setting, named by the message
            raise


@click.group(cls=HotlineGroup)
def main() -> None:
    """Hotline: customer-service standards on a Twilio Voice hotline."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=None, type=int,
              help="gunicorn worker processes  [default: WEB_CONCURRENCY, else two per core]")
@click.option("--with-worker/--no-worker", default=True, show_default=True, help="also run a job worker")
def serve(host: str, port: int, workers: int | None, with_worker: bool) -> None:
    """Run the web app under gunicorn (and a job worker), as the Procfile does."""
    from . import create_app
    from .runtime import child_env

    app = create_app()  # prepares storage and starts the embedded Redis if REDIS_URL is unset
    runtime = app.extensions["hotline"]
    env = child_env(runtime.settings, runtime)
    procs = []
    if with_worker:
        procs.append(subprocess.Popen([sys.executable, "-m", "webhooks.cli", "worker"], env=env))
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:webhooks.gunicorn_conf", "-b", f"{host}:{port}",
           *(["-w", str(workers)] if workers else []), "--access-logfile", "-", "webhooks:create_app()"]
    click.echo(f"Hotline on http://{host}:{port}  (health: /healthz, API: /api/openapi.json)")
    try:
        subprocess.run(cmd, env=env, check=False)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            proc.terminate()


@main.command()
@click.option("--burst", is_flag=True, help="apply what is queued, then exit")
def worker(burst: bool) -> None:
    """Run the job worker (card events, Twilio callbacks, callbacks dispatch) with its scheduler."""
    import threading

    from . import create_app
    from .worker import make_worker, watch_chains

    app = create_app()
    worker_ = make_worker(app)
    stop = threading.Event()
    if not burst:  # the overdue check (escalations, alerts) and the dispatch tick (due callbacks,
        watch_chains(app, stop)  # ended wrap-ups) re-schedule themselves; kept alive
    try:
        worker_.work(burst=burst, with_scheduler=not burst)
    finally:
        stop.set()


@main.group()
def db() -> None:
    """The card store's schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations to DATABASE_URL (or the embedded SQLite file)."""
    from recordings import db as card_db

    settings = from_env()
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    card_db.upgrade(url)
    click.echo(f"card store up to date: {_redact(url)}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.group()
def rules() -> None:
    """The routing rules file."""


@rules.command("check")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def rules_check(path: Path) -> None:
    """Print every error with its field path, then every warning ("warning: path: message"),
    then "ok" if there was no error. Warnings alone do not fail the check."""
    from routing_rules.loading import review_rules

    if not path.exists():
        raise click.ClickException(f"{path}: no such file")
    review = review_rules(path.read_text(encoding="utf-8"))
    for error in review.errors:
        click.echo(f"{error.path}: {error.message}")
    for warning in review.warnings:
        click.echo(f"warning: {warning.path}: {warning.message}")
    if not review.ok:
        sys.exit(1)
    click.echo("ok")


@main.command()
@click.argument("csv_in", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "csv_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where to write the verdicts (default: FILE.screened.csv)")
@click.option("--at", "at", default=None, help="screen as of this ISO time (default: now)")
@click.option("--purpose", default=None, help="call purpose for per-purpose windows")
def screen(csv_in: Path, csv_out: Path | None, at: str | None, purpose: str | None) -> None:
    """Screen a CSV of numbers through the outbound guard (first column, or a `number` column)."""
    from recordings import card
    from recordings import db as card_db
    from routing_rules.loading import load_rules_file
    from telephony.screening import screen_csv, stored_cards

    settings = from_env()
    when = datetime.now(UTC)
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise click.BadParameter("expected an ISO time such as 2026-11-24T15:00:00Z", param_hint="--at")
        if when.tzinfo is None:
            raise click.BadParameter("the time needs a UTC offset", param_hint="--at")
    rules_obj = load_rules_file(settings.rules_path)
    card_db.configure(settings.effective_database_url)
    try:
        with card_db.session() as s:
            opted_numbers, opted_clients_numbers = card.opted_out_sets(s)
    except Exception as error:  # noqa: BLE001 — an empty store is fine; a broken one is said
        raise click.ClickException(f"cannot read opt-outs from the card store: {error}")
    csv_out = csv_out or csv_in.with_suffix(".screened.csv")
    with csv_in.open(encoding="utf-8") as lines:
        total = sum(1 for _ in lines)
    with click.progressbar(length=total, label="screening") as bar:
        # the cards' zones and windows, read per batch of rows: the dialler's verdict per number
        summary = screen_csv(csv_in, csv_out, rules_obj.outbound, opted_numbers, when,
                             progress=lambda done: bar.update(done - bar.pos),  # it reports the running total
                             opted_out_clients=opted_clients_numbers,
                             read_cards=stored_cards, default_region=rules_obj.hotline.country,
                             purpose=purpose)
    click.echo(f"wrote {csv_out}: {summary}")


@main.group("opt-outs")
def opt_outs() -> None:
    """Do-not-call requests kept on the card store."""


@opt_outs.command("import")
@click.argument("csv_in", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", default="import", show_default=True, help="who is recorded as the source")
def opt_outs_import(csv_in: Path, by: str) -> None:
    """Import numbers that must never be called (CSV: a `phone` column, optional `reason`).

    Each becomes a number-level opt-out with source "import", written on the card when the
    number has one. Invalid rows are listed by line and skipped; nothing valid is lost.
    """
    import csv

    from recordings import card
    from recordings import db as card_db
    from telephony.numbers import normalize

    settings = from_env()
    card_db.configure(settings.effective_database_url)
    country = _hotline_country(settings)
    added = skipped = 0
    with csv_in.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    has_header = "phone" in header
    phone_col = header.index("phone") if has_header else 0
    reason_col = header.index("reason") if has_header and "reason" in header else None
    with card_db.session() as s:
        for line, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
            raw = row[phone_col].strip() if len(row) > phone_col else ""
            e164 = normalize(raw, country)
            if e164 is None:
                click.echo(f"line {line}: phone: {raw!r} is not a valid phone number; skipped", err=True)
                skipped += 1
                continue
            reason = row[reason_col].strip() if reason_col is not None and len(row) > reason_col else None
            card.opt_out_number(s, e164, source="import", reason=reason or "imported list", by=by)
            added += 1
    click.echo(f"imported {added} opt-outs, skipped {skipped}")


def _hotline_country(settings: object) -> str:
    from routing_rules.loading import load_rules_file

    try:
        return load_rules_file(settings.rules_path).hotline.country  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return "EE"


@main.command()
@click.argument("scenario", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--interactive", is_flag=True, help="a terminal softphone: hear prompts as text, press keys")
@click.option("--from", "from_", default="+37255512345", show_default=True, help="caller number (interactive)")
def simulate(scenario: Path | None, interactive: bool, from_: str) -> None:
    """Play a scenario file against a local hotline, or call it yourself (--interactive)."""
    from .demo import simulate_command

    if not scenario and not interactive:
        raise click.UsageError("give a SCENARIO.yaml or --interactive")
    sys.exit(simulate_command(scenario, interactive, from_))


@main.command()
@click.option("--keep-running", is_flag=True, help="leave the web app up after the scenarios")
@click.option("--port", default=0, type=int, help="web port (0: any free port)")
def demo(keep_running: bool, port: int) -> None:
    """Set up and run everything locally and play the scenarios that show every standard."""
    from .demo import run_demo

    sys.exit(run_demo(keep_running=keep_running, port=port))


@main.group()
def users() -> None:
    """Web console users."""


@users.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["admin", "supervisor", "agent"]))
@click.option("--agent", "agent_id", default=None, help="the agent id in the rules (agents)")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def users_add(username: str, role: str, agent_id: str | None, password_stdin: bool) -> None:
    """Create a console user, or reset an existing one's password and role."""
    from recordings import db as card_db

    from .console.users import ensure_user

    settings = from_env()
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    card_db.upgrade(settings.effective_database_url)
    card_db.configure(settings.effective_database_url)
    password = (sys.stdin.readline().rstrip("\r\n") if password_stdin
                else click.prompt("Password", hide_input=True, confirmation_prompt=True))
    try:
        created = ensure_user(username, password, role, agent_id)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{'created' if created else 'updated'} {role} {username}")


@main.command()
@click.option("--from", "from_", required=True, help="a date (the hotline's midnight) or an ISO time")
@click.option("--to", "to", required=True, help="end, exclusive: a date or an ISO time")
@click.option("--queue", default=None, help="only this queue")
@click.option("--by", type=click.Choice(["queue", "agent", "hour"]), default="queue", show_default=True)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV file to write ('-' for stdout)")
def report(from_: str, to: str, queue: str | None, by: str, out: Path) -> None:
    """Service-level report from the card store: rings, abandonment, deadlines, survey."""
    from recordings import db as card_db
    from recordings import reports
    from routing_rules.loading import load_rules_file

    settings = from_env()
    rules_obj = load_rules_file(settings.rules_path)
    zone = rules_obj.hotline.zone
    try:
        start, end = reports.parse_bound(from_, zone), reports.parse_bound(to, zone)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if start >= end:
        raise click.BadParameter("--to must be after --from")
    if queue is not None and queue not in rules_obj.queues:
        raise click.BadParameter(f"one of {', '.join(rules_obj.queues)}", param_hint="--queue")
    card_db.configure(settings.effective_database_url)
    with card_db.session(readonly=True) as s:
        rows = reports.service_level(s, start, end, queue=queue, by=by, zone=zone)  # type: ignore[arg-type]
    if str(out) == "-":
        reports.write_csv(rows, sys.stdout)
        return
    with out.open("w", encoding="utf-8", newline="") as handle:
        reports.write_csv(rows, handle)
    click.echo(f"wrote {out}: {len(rows) - 1} {by} rows and a total")


if __name__ == "__main__":  # `python -m webhooks.cli`
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
