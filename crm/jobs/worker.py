"""The worker loop behind ``flask --app crm jobs run``: send the outbox, run the periodic jobs.

It polls the outbox every ``JOBS_POLL_SECONDS`` (a read that locks nothing while idle) and
runs the periodic jobs every ``JOBS_PERIODIC_SECONDS``. SIGTERM or SIGINT lets the message
being sent finish, hands back the rest of its batch, and exits. ``once`` does all due work
and returns, for cron.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from ..models import db, utcnow
from . import outbox, periodic
from .senders import Sender, SmtpSender, SmtpSettings, WebhookSender

log = logging.getLogger("crm.jobs")


def build_senders(config: dict) -> dict[str, Sender]:
    """One sender per configured channel; says once, in the log, when e-mail is off."""
    senders: dict[str, Sender] = {}
    if config.get("SMTP_URL"):
        if not config.get("MAIL_FROM"):
            raise ValueError("CRM_MAIL_FROM is required with CRM_SMTP_URL")
        senders["email"] = SmtpSender(SmtpSettings.from_url(config["SMTP_URL"]), config["MAIL_FROM"])
    else:
        log.warning("e-mail is off (CRM_SMTP_URL is not set): alerts appear in the app only")
    if config.get("ALERT_WEBHOOK_URL"):
        senders["webhook"] = WebhookSender(config["ALERT_WEBHOOK_URL"], config.get("ALERT_WEBHOOK_SECRET") or "")
    if not config.get("BASE_URL"):
        log.warning("CRM_BASE_URL is not set: links in messages carry only a path")
    return senders


class Worker:
    """Sends the outbox and runs the periodic jobs until stopped."""

    def __init__(self, app: Flask, senders: dict[str, Sender] | None = None, batch: int = 50):
        self.app, self.batch = app, batch
        self.senders = build_senders(app.config) if senders is None else senders
        self.stop = threading.Event()
        self.poll = float(app.config["JOBS_POLL_SECONDS"])
        self.every = float(app.config["JOBS_PERIODIC_SECONDS"])

    def handle_signals(self) -> None:
        """Stop cleanly on SIGTERM (systemd) and SIGINT (Ctrl-C)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop.set())

    def run(self, once: bool = False) -> None:
        """Loop until stopped; with ``once``, run the jobs, drain what is due and return."""
        next_jobs = 0.0
        try:
            while not self.stop.is_set():
                if time.monotonic() >= next_jobs:
                    self._guarded(lambda: periodic.run_all(utcnow()))
                    next_jobs = time.monotonic() + self.every
                claimed = self._guarded(self._drain) or 0
                if once and not claimed:
                    return
                if not claimed:
                    self.stop.wait(self.poll)
        finally:
            for sender in self.senders.values():
                sender.close()
            db.session.remove()

    def _drain(self) -> int:
        """Send batches while rows are due; returns how many were claimed."""
        if not outbox.anything_due(utcnow()):
            return 0
        total = 0
        while not self.stop.is_set():
            claimed = outbox.deliver(self.senders, batch=self.batch, stop=self.stop)
            total += claimed
            if claimed < self.batch:
                break
        return total

    def _guarded(self, work: Callable[[], object]) -> object:
        """Run one step; a database outage is logged (by kind, never by content) and retried later."""
        try:
            return work()
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.error("worker step failed (%s); retrying after %.1f s", type(exc).__name__, self.poll)
            self.stop.wait(self.poll)
            return None
