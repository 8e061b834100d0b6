"""Key management commands: status, add, promote, retire and rotate-keys.

Rotation takes three steps: ``keys add`` (active), ``keys promote``
(primary for new data), ``rotate-keys`` (re-wrap every lead's data key and re-seal small
secrets under the primary), then ``keys retire`` once nothing uses the old key. No command
ever prints key bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from .. import audit, crypto
from ..models import SEALED_COLUMNS, LeadKey, db, keyring, lead_key_counts, sealed_secret_counts, utcnow
from ..settings import save_keyring

LEAD_KEYS = LeadKey.__table__


@click.group("keys", cls=AppGroup)
def keys() -> None:
    """Inspect and manage the master keys in the keyring."""


@keys.command("status")
def status() -> None:
    """List every master key with its status and how much data it protects."""
    ring = keyring()
    leads, sealed = lead_key_counts(), sealed_secret_counts()
    db.session.rollback()
    click.echo(f"{'kid':>4}  {'status':<8}  {'lead keys':>10}  {'sealed secrets':>14}")
    for kid in sorted(set(ring.master_keys) | set(leads) | set(sealed)):
        state = ring.master_keys[kid].status if kid in ring.master_keys else "MISSING"
        click.echo(f"{kid:>4}  {state:<8}  {leads.get(kid, 0):>10}  {sealed.get(kid, 0):>14}")


def _change_keyring(action: str, change: Callable[[crypto.Keyring], int], **details: Any) -> int:
    """Apply ``change`` to a copy of the keyring, audit it, save the file, then commit.

    The running app adopts the new keyring only once both the file and the audit row are
    written; if the commit fails the previous file is put back.
    """
    before = keyring()
    ring = crypto.Keyring.from_json(before.to_json())
    try:
        kid = change(ring)
    except crypto.CryptoError as exc:
        raise click.ClickException(str(exc)) from None
    audit.record(action, object_type="key", object_id=str(kid),
                 details={"status": ring.master_keys[kid].status, **details})
    try:
        save_keyring(current_app, ring)
    except (crypto.KeyringError, OSError) as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    try:
        db.session.commit()
    except SQLAlchemyError:
        save_keyring(current_app, before)
        raise
    current_app.extensions["crm_keyring"] = ring
    return kid


@keys.command("add")
def add() -> None:
    """Add a new master key as active (not yet used for new data)."""
    kid = _change_keyring("key_added", lambda ring: ring.add_key().kid)
    click.echo(f"Added key {kid} (active). Next: flask --app crm keys promote {kid}")


@keys.command("promote")
@click.argument("kid", type=int)
def promote(kid: int) -> None:
    """Make KID the primary key that wraps every new data key."""
    previous = keyring().primary.kid

    def change(ring: crypto.Keyring) -> int:
        ring.promote(kid)
        return kid

    _change_keyring("key_promoted", change, previous_primary=previous)
    click.echo(
        f"Key {kid} is now primary; key {previous} stays active for reading. Restart the app "
        "servers so they wrap new data with it, then run: flask --app crm rotate-keys"
    )


def _refuse_retire(kid: int, reason: str, message: str) -> None:
    """Audit a refused retirement and stop with ``message``."""
    audit.record("key_retired", object_type="key", object_id=str(kid), outcome="refused",
                 details={"reason": reason})
    db.session.commit()
    raise click.ClickException(message)


@keys.command("retire")
@click.argument("kid", type=int)
def retire(kid: int) -> None:
    """Retire KID so it can no longer unwrap; refused while any data still uses it."""
    ring = keyring()
    if kid in ring.master_keys and ring.master_keys[kid].status == crypto.PRIMARY:
        _refuse_retire(kid, "primary", f"key {kid} is the primary; promote another key first")
    leads, sealed = lead_key_counts().get(kid, 0), sealed_secret_counts().get(kid, 0)
    if leads or sealed:
        _refuse_retire(
            kid, "in_use",
            f"key {kid} still wraps {leads} lead keys and {sealed} sealed secrets; "
            "run flask --app crm rotate-keys first",
        )

    def change(ring: crypto.Keyring) -> int:
        ring.retire(kid)
        return kid

    _change_keyring("key_retired", change)
    click.echo(f"Key {kid} is retired. Destroy it only after backups made before today expire.")


# --- rotation ------------------------------------------------------------------------


def _next_batch(primary: int, after: str, size: int) -> list[Row[Any]]:
    """The next ``size`` lead keys not on the primary, in lead-id order after ``after``."""
    query = (
        select(LEAD_KEYS.c.lead_id, LEAD_KEYS.c.kid, LEAD_KEYS.c.nonce, LEAD_KEYS.c.wrapped)
        .where(LEAD_KEYS.c.kid != primary, LEAD_KEYS.c.lead_id > after)
        .order_by(LEAD_KEYS.c.lead_id)
        .limit(size)
        .with_for_update()
    )
    return list(db.session.execute(query))


def _rewrap(ring: crypto.Keyring, rows: list[Row[Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Re-wrap each row's data key; return the new values and the ids that failed to unwrap."""
    now = utcnow()
    params, failed = [], []
    for lead_id, kid, nonce, wrapped in rows:
        try:
            new_kid, new_nonce, new_wrapped = crypto.rewrap_data_key(ring, lead_id, kid, nonce, wrapped)
        except crypto.DecryptionError:
            failed.append(lead_id)
            continue
        params.append({"b_id": lead_id, "b_kid": new_kid, "b_nonce": new_nonce, "b_wrapped": new_wrapped,
                       "b_at": now})
    return params, failed


_UPDATE_LEAD_KEY = (
    update(LEAD_KEYS)
    .where(LEAD_KEYS.c.lead_id == bindparam("b_id"))
    .values(kid=bindparam("b_kid"), nonce=bindparam("b_nonce"), wrapped=bindparam("b_wrapped"),
            wrapped_at=bindparam("b_at"))
)


def _write_batch(number: int, rows: list[Row[Any]], params: list[dict[str, Any]], failed: list[str]) -> None:
    """Store one batch, audit it (counts only) and commit, so an interruption loses nothing."""
    if params:
        db.session.execute(_UPDATE_LEAD_KEY, params)
    for lead_id in failed:
        audit.record("decrypt_failed", object_type="lead", object_id=lead_id, outcome="failure",
                     details={"what": "data_key", "during": "rotate_keys"})
    audit.record(
        "keys_rotated", object_type="key", object_id=str(keyring().primary.kid),
        details={"batch": number, "rewrapped": len(params), "failed": len(failed),
                 "from_kids": sorted({row.kid for row in rows})},
    )
    db.session.commit()


def _rotate_leads(ring: crypto.Keyring, batch_size: int) -> tuple[int, int]:
    """Re-wrap every lead key not on the primary, batch by batch; return (done, failed)."""
    primary = ring.primary.kid
    total = _not_on(primary)
    click.echo(f"{total} lead keys to re-wrap under key {primary}.")
    done = failed = number = 0
    after, started = "", time.perf_counter()
    while rows := _next_batch(primary, after, batch_size):
        number += 1
        params, bad = _rewrap(ring, rows)
        _write_batch(number, rows, params, bad)
        after = rows[-1].lead_id
        done, failed = done + len(params), failed + len(bad)
        rate = done / max(time.perf_counter() - started, 1e-9)
        click.echo(f"  batch {number}: {done}/{total} re-wrapped, {failed} failed ({rate:,.0f}/s)")
    db.session.rollback()
    return done, failed


def _reseal(ring: crypto.Keyring, purpose: str, row_id: str, blob: bytes) -> bytes | None:
    """Re-seal one secret under the primary, or audit and skip one that fails authentication."""
    try:
        return crypto.seal(ring, purpose, row_id, crypto.unseal(ring, purpose, row_id, blob))
    except crypto.DecryptionError:
        audit.record("decrypt_failed", object_type="user", object_id=row_id, outcome="failure",
                     details={"what": purpose, "during": "rotate_keys"})
        return None


def _store_sealed(table: Any, column: Any, row_id: str, fresh: bytes) -> None:
    """Write a re-sealed secret through its model, so a row MAC covering it is renewed too."""
    model = next(m.class_ for m in db.Model.registry.mappers if m.local_table is table)
    setattr(db.session.get(model, row_id), column.key, fresh)


def _reseal_secrets(ring: crypto.Keyring) -> int:
    """Re-seal every sealed secret (TOTP seeds) not under the primary, in one audited batch."""
    primary, resealed = ring.primary.kid, 0
    for table, column, purpose in SEALED_COLUMNS:
        rows = db.session.execute(select(table.c.id, column).where(column.is_not(None))).all()
        for row_id, blob in rows:
            fresh = None if crypto.sealed_kid(blob) == primary else _reseal(ring, purpose, row_id, blob)
            if fresh is not None:
                _store_sealed(table, column, row_id, fresh)
                resealed += 1
    if resealed:
        audit.record("keys_rotated", object_type="key", object_id=str(primary), details={"resealed": resealed})
    db.session.commit()
    return resealed


def _not_on(primary: int) -> int:
    """How many lead keys are wrapped by a master key other than the primary."""
    return db.session.scalar(select(func.count()).select_from(LEAD_KEYS).where(LEAD_KEYS.c.kid != primary)) or 0


def _left_behind(primary: int) -> int:
    """Lead keys still not on the primary (failures, or leads written by servers not yet restarted)."""
    count = _not_on(primary)
    db.session.rollback()
    return count


def enlarge_sqlite_cache() -> None:
    """Let SQLite keep what a bulk command walks (tables and indexes) in memory (32 MB), not re-read pages."""
    conn = db.session.connection()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA cache_size = -32768")


@click.command("rotate-keys")
@click.option("--batch-size", type=click.IntRange(1, 50_000), default=5_000, show_default=True,
              help="Lead keys re-wrapped and committed per transaction.")
@with_appcontext
def rotate_keys(batch_size: int) -> None:
    """Re-wrap every lead's data key under the primary master key; safe to re-run after an interruption."""
    ring = keyring()
    enlarge_sqlite_cache()
    try:
        done, failed = _rotate_leads(ring, batch_size)
        resealed = _reseal_secrets(ring)
    except (crypto.UnknownKeyError, crypto.RetiredKeyError) as exc:
        db.session.rollback()
        raise click.ClickException(f"{exc}; restore that key to the keyring as active and re-run") from None
    click.echo(f"Done: {done} lead keys re-wrapped, {resealed} sealed secrets re-sealed.")
    if _left_behind(ring.primary.kid) > failed:
        click.echo("Some leads were saved under an older key during the run: restart the app servers "
                   "and run rotate-keys again.")
    if failed:
        raise click.ClickException(f"{failed} lead keys failed authentication (audited as decrypt_failed)")
