import datetime as dt

from sqlalchemy import text

from crm.models import Lead, db


def test_lead_round_trip_through_encrypted_attributes(app, make_lead):
    lead_id = make_lead(phone="(949) 555-0100", email="Pat@Example.com", dob=dt.date(1980, 5, 4))
    with app.app_context():
        lead = db.session.get(Lead, lead_id)
        assert lead.phone == "(949) 555-0100"
        assert lead.dob == dt.date(1980, 5, 4)
        raw = db.session.execute(text("SELECT phone_enc FROM leads")).scalar_one()
        assert b"555" not in bytes(raw)


def test_health_is_public(client):
    assert client.get("/health").json == {"status": "ok"}


def test_staff_page_redirects_anonymous(client):
    response = client.get("/leads/home")
    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]
