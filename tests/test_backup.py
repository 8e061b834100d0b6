"""Backups: a consistent copy while enquiries arrive, its manifest, and restores that stay shredded."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm import create_app
from crm.models import Lead, LeadKey, db
from tests.privacy_helpers import PNG_CARD, sqlite_files, store_full_lead, stored_ciphertexts
from tests.test_public_form import submit


@pytest.fixture(autouse=True)
def sqlite_only(app):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("SQLite backups; PostgreSQL uses pg_dump (tests/test_backup_pg.py)")


def open_copy(config: dict, path: Path, instance: Path, **extra):
    """An app running on a restored copy of the database."""
    return create_app({**config, "DATABASE_URL": f"sqlite:///{path}", **extra}, instance_path=str(instance))


def test_backup_taken_while_enquiries_arrive_restores_verifies_and_reads_back(app, client, runner, config, tmp_path):
    stop, sent, errors = threading.Event(), [], []

    def keep_submitting(tag: int) -> None:
        own = app.test_client()
        number = 0
        while not stop.is_set() and number < 40:
            number += 1
            response = submit(own, app, phone=f"(949) 555-{tag}{number:03d}", email=f"p{tag}-{number}@example.org")
            (sent if response.status_code in (302, 303) else errors).append(response.status_code)

    writers = [threading.Thread(target=keep_submitting, args=(tag,)) for tag in (1, 2)]
    for writer in writers:
        writer.start()
    while len(sent) < 5 and not errors:
        threading.Event().wait(0.01)
    target = tmp_path / "backup.sqlite3"
    result = runner.invoke(args=["backup", str(target)])
    stop.set()
    for writer in writers:
        writer.join()
    assert result.exit_code == 0, result.output
    assert errors == [] and len(sent) >= 5
    manifest = json.loads((tmp_path / "backup.sqlite3.manifest.json").read_text())
    assert manifest["format"] == "crm-backup-v1" and manifest["file"] == "backup.sqlite3"
    assert manifest["key_ids"] == [1] and manifest["primary_key_id"] == 1 and manifest["created_at"].endswith("Z")
    assert target.stat().st_mode & 0o077 == 0
    restored = open_copy(config, target, tmp_path / "restored")
    with restored.app_context():
        leads = list(db.session.scalars(select(Lead)))
        assert len(leads) == manifest["leads"] and len(leads) >= 5
        assert all(lead.first_name and lead.phone for lead in leads)
        db.session.remove()
    verify = restored.test_cli_runner().invoke(args=["audit", "verify"])
    assert verify.exit_code == 0, verify.output


def test_backup_manifest_names_the_schema_revision(config, tmp_path):
    migrated = create_app({**config, "DATABASE_URL": f"sqlite:///{tmp_path / 'm.sqlite3'}", "AUTO_MIGRATE": True},
                          instance_path=str(tmp_path / "m"))
    result = migrated.test_cli_runner().invoke(args=["backup", str(tmp_path / "m-backup.sqlite3")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "m-backup.sqlite3.manifest.json").read_text())
    assert manifest["schema_revision"] == "0011"


def test_backup_refuses_to_overwrite(runner, tmp_path):
    target = tmp_path / "exists.sqlite3"
    target.write_bytes(b"keep me")
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 1 and "already exists" in result.output
    assert target.read_bytes() == b"keep me"


def backup_then_erase(app, runner, tmp_path):
    """A backup holding two leads, then one of them erased; returns (erased, kept, backup path, its ciphertexts)."""
    erased = store_full_lead(app, "A")
    kept = store_full_lead(app, "B", phone="(714) 555-0199", email="b@example.net")
    blobs = stored_ciphertexts(app, erased.id)
    target = tmp_path / "before-erasure.sqlite3"
    assert runner.invoke(args=["backup", str(target)]).exit_code == 0
    assert runner.invoke(args=["privacy", "erase", erased.reference, "--yes"]).exit_code == 0
    assert all(blob in target.read_bytes() for blob in blobs[:3])  # the old copy still holds the lead
    return erased, kept, target, blobs


def test_restore_check_shreds_a_lead_erased_after_the_backup(app, runner, config, tmp_path):
    erased, kept, target, blobs = backup_then_erase(app, runner, tmp_path)
    ledger = Path(app.instance_path) / "shred-ledger.jsonl"
    restored = open_copy(config, target, tmp_path / "r", SHRED_LEDGER_FILE=str(tmp_path / "no-ledger-yet.jsonl"))
    with restored.app_context():
        assert db.session.get(Lead, erased.id).is_erased is False  # the restore brought it back
        db.session.remove()
    restored.config["SHRED_LEDGER_FILE"] = str(ledger)
    result = restored.test_cli_runner().invoke(args=["backup", "restore-check"])
    assert result.exit_code == 0, result.output
    assert "1 erased lead(s) shredded again" in result.output
    with restored.app_context():
        assert db.session.get(Lead, erased.id).is_erased
        assert db.session.get(LeadKey, erased.id) is None
        assert db.session.get(Lead, kept.id).insurances[0].cards[0].content == PNG_CARD + b"B"
    files = sqlite_files(restored)
    assert [b for b in blobs if b in files] == []
    verify = restored.test_cli_runner().invoke(args=["audit", "verify"])
    assert verify.exit_code == 0, verify.output
    again = restored.test_cli_runner().invoke(args=["backup", "restore-check"])
    assert "0 erased lead(s) shredded again" in again.output


def test_starting_on_a_restored_copy_reapplies_the_ledger(app, runner, config, tmp_path, caplog):
    erased, _kept, target, _blobs = backup_then_erase(app, runner, tmp_path)
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(target, copy)
    restored = open_copy(config, copy, Path(app.instance_path))  # same instance: the ledger is there
    with restored.app_context():
        assert db.session.get(Lead, erased.id).is_erased
        assert db.session.scalar(select(func.count()).select_from(LeadKey)) == 1
    assert "were shredded again" in caplog.text


def test_manifest_and_backup_hold_no_key_bytes(app, runner, tmp_path, keyring):
    target = tmp_path / "b.sqlite3"
    assert runner.invoke(args=["backup", str(target)]).exit_code == 0
    contents = target.read_bytes() + (tmp_path / "b.sqlite3.manifest.json").read_bytes()
    for key in keyring.master_keys.values():
        assert key.key not in contents and key.key.hex().encode() not in contents
    assert keyring.audit_key not in contents and keyring.index_key not in contents
