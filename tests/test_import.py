"""CSV import: header mapping, row validation, duplicates attached, idempotent re-import, no partial leads."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from crm.models import AuditEvent, ImportedRow, ImportUpload, Insurance, Lead, LeadEvent, LeadKey, Role, db
from tests.auth_helpers import audit_events

HEADER = ["First Name", "LAST NAME", "date_of_birth", "Mobile", "E-Mail", "Zip Code", "Coverage",
          "Insurance Company", "Member ID", "Referring Provider", "NPI"]
BAD_ROWS = [  # (cells, reason) one for each way a row is refused
    (["", "Nolast", "1980-01-01", "(949) 555-7001", "", "", "", "", "", "", ""], "First name: Enter your first name."),
    (["Ann", "", "1980-01-01", "(949) 555-7002", "", "", "", "", "", "", ""], "Last name: Enter your last name."),
    (["Ann", "Bee", "31/31/1980", "(949) 555-7003", "", "", "", "", "", "", ""], "Date of birth: Enter your date"),
    (["Ann", "Bee", "1980-01-01", "", "", "", "", "", "", "", ""], "Mobile phone: Give us a phone number"),
    (["Ann", "Bee", "1980-01-01", "12", "", "", "", "", "", "", ""], "Mobile phone: Enter a phone number we can"),
    (["Ann", "Bee", "1980-01-01", "", "not-an-email", "", "", "", "", "", ""], "E-mail address: Enter an e-mail"),
    (["Ann", "Bee", "1980-01-01", "(949) 555-7004", "", "9261", "", "", "", "", ""], "ZIP code: Enter a 5-digit"),
    (["Ann", "Bee", "1980-01-01", "(949) 555-7005", "", "", "PPO", "", "", "", ""], "Insurance company: Enter"),
    (["Ann", "Bee", "2999-01-01", "(949) 555-7006", "", "", "", "", "", "", ""], "Date of birth: The date of birth"),
    (["Ann", "Bee", "1980-01-01", "(949) 555-7007", "", "", "gold plan", "", "", "", ""], "coverage"),
]
DOB_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m-%d-%Y", "%B %d, %Y")
PHONE_FORMATS = ("({a}) {b}-{c}", "{a}-{b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "1{a}{b}{c}")


def person(n: int) -> dict:
    """The n-th generated person: unique phone, e-mail, name and DOB."""
    dob = dt.date(1950, 1, 1) + dt.timedelta(days=n * 7)
    return {"first": f"Impfirst{n}", "last": f"Implast{n}", "dob": dob, "phone": f"714555{n:04d}",
            "email": f"imported.{n}@example.org"}


def cells(n: int, variant: int = 0, zip_code: str = "92618") -> list[str]:
    """A CSV row for person ``n``, its date and phone written in one of several common formats."""
    p = person(n)
    phone = PHONE_FORMATS[(n + variant) % len(PHONE_FORMATS)].format(a=p["phone"][:3], b=p["phone"][3:6],
                                                                    c=p["phone"][6:])
    coverage = ("PPO", "Aetna", f"W{n:08d}") if n % 3 == 0 else ("self pay", "", "")
    return [p["first"], p["last"], p["dob"].strftime(DOB_FORMATS[(n + variant) % len(DOB_FORMATS)]), phone,
            p["email"].upper() if variant else p["email"], zip_code, *coverage, "Dr Ames", "1245319599"]


def csv_text(rows: list[list[str]], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def thousand_rows() -> list[list[str]]:
    """840 new people, 10 repeats of them later in the file, 100 people already on file, 50 bad rows."""
    rows = [cells(n) for n in range(840)]
    rows += [cells(n, variant=1, zip_code="92620") for n in range(10)]  # same person, other formats
    rows += [cells(n, variant=1) for n in range(1000, 1100)]  # these people already have leads
    rows += [bad for bad, _ in BAD_ROWS] * 5
    return rows


@pytest.fixture
def existing(app):
    """100 leads already in the database (people 1000..1099), created through the models."""
    with app.app_context():
        for n in range(1000, 1100):
            p = person(n)
            db.session.add(Lead(first_name=p["first"], last_name=p["last"], dob=p["dob"], phone=p["phone"],
                                email=p["email"]))
        db.session.commit()


def run_cli(runner, tmp_path, content: str, *args: str):
    path = tmp_path / "leads.csv"
    path.write_text(content, encoding="utf-8")
    return runner.invoke(args=["leads", "import", str(path), "--source", "referral", *args])


def counts(app) -> dict[str, int]:
    with app.app_context():
        return {model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
                for model in (Lead, LeadKey, Insurance, LeadEvent, ImportedRow)}


def assert_no_partial_lead(app) -> None:
    """Every lead has its key, its insurance and its created event; every imported row points at a lead."""
    with app.app_context():
        leads = set(db.session.scalars(select(Lead.id)))
        assert leads == set(db.session.scalars(select(LeadKey.lead_id)))
        assert leads == set(db.session.scalars(select(Insurance.lead_id)))
        created = set(db.session.scalars(select(LeadEvent.lead_id).where(LeadEvent.kind == "created")))
        assert leads == created
        assert set(db.session.scalars(select(ImportedRow.lead_id))) <= leads


def test_thousand_rows_give_exactly_the_expected_counts_and_a_reimport_creates_nothing(app, runner, tmp_path,
                                                                                       existing):
    content = csv_text(thousand_rows())
    dry = run_cli(runner, tmp_path, content, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "1000 rows: 840 would be created, 110 would be attached" in dry.output
    assert counts(app)["leads"] == 100
    result = run_cli(runner, tmp_path, content)
    assert result.exit_code == 0, result.output
    assert "1000 rows: 840 created, 110 attached to existing leads, 0 already imported, 50 refused." in result.output
    assert all(f"Implast{n}" not in result.output and person(n)["phone"] not in result.output for n in range(900))
    for line, (_bad, reason) in enumerate(BAD_ROWS, start=952):
        assert f"line {line}: " in result.output
        assert reason.split(":")[0] in result.output.split(f"line {line}: ")[1].split("\n")[0]
    after_first = counts(app)
    # an attached row's insurance is kept beside its lead's, for a coordinator to accept or dismiss
    assert after_first == {"leads": 940, "lead_keys": 940, "insurances": 840 + 110, "lead_events": 840 + 110,
                           "imported_rows": 950}
    again = run_cli(runner, tmp_path, content)
    assert "1000 rows: 0 created, 0 attached to existing leads, 950 already imported, 50 refused." in again.output
    assert counts(app) == after_first
    assert_no_partial_lead_for_imported(app)
    with app.app_context():
        lead = db.session.scalars(select(Lead).where(Lead.phone_bidx.is_not(None)).where(
            Lead.source == "referral").order_by(Lead.created_at)).first()
        assert lead.source_details == {"referrer_name": "Dr Ames", "referrer_npi": "1245319599"}
        repeat = db.session.scalars(select(ImportedRow).where(ImportedRow.lead_id == lead.id)).all()
        assert len(repeat) in (1, 2)
        details = [json.loads(e.details) for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "leads_imported"))]
        assert sum(d["created"] for d in details) == 840 and sum(d["attached"] for d in details) == 110


def assert_no_partial_lead_for_imported(app) -> None:
    """Imported leads (which, unlike the fixture's, carry insurance) are whole."""
    with app.app_context():
        imported = set(db.session.scalars(select(Lead.id).where(Lead.source == "referral")))
        assert imported <= set(db.session.scalars(select(LeadKey.lead_id)))
        assert imported <= set(db.session.scalars(select(Insurance.lead_id)))


def test_raw_storage_holds_no_plaintext_of_imported_values(app, runner, tmp_path):
    rows = [cells(n) for n in range(30)]
    assert run_cli(runner, tmp_path, csv_text(rows)).exit_code == 0
    plain = [v for n in range(30) for v in (person(n)["first"], person(n)["last"], person(n)["phone"][-7:],
                                            person(n)["email"], f"W{n:08d}")] + ["Dr Ames", "1245319599"]
    with app.app_context():
        for table in ("leads", "insurances", "lead_events", "imported_rows", "audit_events"):
            for row in db.session.execute(text(f"SELECT * FROM {table}")):  # noqa: S608 - fixed table names
                blob = b"|".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row)
                assert not [v for v in plain if v.encode() in blob], table


def test_headers_are_matched_in_any_case_and_unknown_columns_ignored(app, runner, tmp_path):
    header = ["FIRST_NAME", "surname", "Birth Date", "cell phone", "Favourite colour"]
    result = run_cli(runner, tmp_path, csv_text([["Ann", "Bee", "May 4, 1980", "949 555 0100", "blue"]], header))
    assert "1 rows: 1 created" in result.output
    with app.app_context():
        lead = db.session.scalars(select(Lead)).one()
        assert (lead.first_name, lead.last_name, lead.dob, lead.phone) == ("Ann", "Bee", dt.date(1980, 5, 4),
                                                                           "(949) 555-0100")


def test_a_file_without_the_required_columns_is_refused_whole(app, runner, tmp_path):
    result = run_cli(runner, tmp_path, csv_text([["Ann"]], ["first name"]))
    assert result.exit_code != 0 and "first name, last name and date of birth" in result.output
    assert counts(app)["leads"] == 0


# --- the admin page --------------------------------------------------------------------------


@pytest.fixture
def admin(app, make_user, login_as):
    client = app.test_client()
    login_as(client, make_user(role=Role.ADMIN, display_name="Ada Admin"))
    return client


def upload(client, content: bytes, source: str = "referral"):
    return client.post("/admin/import", data={"source": source, "file": (io.BytesIO(content), "leads.csv")},
                       content_type="multipart/form-data")


def test_admin_page_previews_then_imports_on_confirm(app, admin, existing):
    rows = [cells(n) for n in range(20)] + [cells(1000, variant=1)] + [BAD_ROWS[0][0]]
    preview = upload(admin, csv_text(rows).encode())
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Impfirst0 I." in page and "Implast0" not in page
    assert "Line" in page and ">23<" in page and "Enter your first name." in page
    assert counts(app)["leads"] == 100  # nothing written by the preview
    with app.app_context():
        upload_row = db.session.scalars(select(ImportUpload)).one()
        assert b"Implast0" not in upload_row.content_sealed
    done = admin.post(f"/admin/import/{upload_row.id}")
    assert done.status_code == 200 and "Import finished" in done.get_data(as_text=True)
    assert counts(app)["leads"] == 120
    assert admin.post(f"/admin/import/{upload_row.id}").status_code == 404  # used once
    assert [json.loads(e.details)["created"] for e in audit_events(app, "leads_imported")] == [20]


def test_coordinators_cannot_import(app, client, make_user, login_as):
    login_as(client, make_user())
    assert upload(client, csv_text([cells(1)]).encode()).status_code == 403


CELL = st.one_of(st.text(max_size=40), st.sampled_from(["", "1980-01-01", "(949) 555-0100", "PPO", "a@b.co",
                                                        "05/04/1980", "\x00", "=cmd()", "92618"]))


@given(header=st.lists(st.sampled_from(HEADER + ["x", ""]), min_size=3, max_size=12),
       body=st.lists(st.lists(CELL, max_size=14), max_size=8))
def test_any_csv_content_never_gives_a_500_or_a_partial_lead(app, admin, header, body):
    content = csv_text(body, header).encode("utf-8", "surrogatepass")
    response = upload(admin, content)
    assert response.status_code == 200
    with app.app_context():
        pending = db.session.scalars(select(ImportUpload.id)).all()
    for upload_id in pending:
        assert admin.post(f"/admin/import/{upload_id}").status_code == 200
    assert_no_partial_lead(app)


@given(raw=st.binary(max_size=300))
def test_any_bytes_never_give_a_500(app, admin, raw):
    assert upload(admin, raw).status_code == 200
    assert_no_partial_lead(app)
