"""Spanish patient pages: the catalog is complete and current, the language is chosen and kept, and a
Spanish-speaking patient gets Spanish labels, errors, consent wording and crisis resources."""

from __future__ import annotations

import gettext as gettext_module
import html
import re
from pathlib import Path

import babel.support
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask_babel import force_locale, gettext
from sqlalchemy import select

from crm import i18n
from crm.forms.public import CONTACT_CONSENT, consent_version
from crm.models import Enquiry, Lead, db
from crm.settings import DEFAULTS
from tests import sentinels as s
from tests.test_public_form import errors_in, fresh_token, submit, valid_form, years_ago

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "crm"
CATALOGS = PACKAGE / "translations"
SPANISH_PO = CATALOGS / "es" / "LC_MESSAGES" / "messages.po"
#: The files whose messages a patient can see: public templates, the layout and macros they use, the
#: public form and view, the error pages, and the clinic texts from settings.
PUBLIC_SOURCES = (
    "public.py", "forms/public.py", "i18n.py", "templates/base.html", "templates/_public_layout.html",
    "templates/_crisis_notice.html", "templates/_forms.html", "templates/errors/", "templates/public/",
)
SPANISH = {"Accept-Language": "es-US,es;q=0.9,en;q=0.5"}


def extracted_messages() -> dict[object, set[str]]:
    """Every message id in the code, as ``bin/dev i18n update`` extracts it, with the files using it."""
    with open(ROOT / "babel.cfg") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "_l": None, "lazy_gettext": None}
    found: dict[object, set[str]] = {}
    for filename, _line, message, _comments, _context in extract_from_dir(
            str(PACKAGE), method_map, options_map, keywords=keywords, strip_comment_tags=True):
        found.setdefault(message, set()).add(filename)
    return found


def spanish_catalog():
    with open(SPANISH_PO, "rb") as fh:
        return read_po(fh)


def as_key(message_id):
    return tuple(message_id) if isinstance(message_id, list) else message_id


def as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def is_translated(message) -> bool:
    strings = message.string if isinstance(message.string, tuple) else (message.string,)
    return not message.fuzzy and all(strings)


def page(response) -> str:
    return response.get_data(as_text=True)


def html_lang(response) -> str:
    return re.search(r'<html lang="([^"]+)">', page(response)).group(1)


# --- the catalog -------------------------------------------------------------------------


def test_every_message_on_a_public_page_has_a_spanish_translation():
    catalog = spanish_catalog()
    public = {message for message, files in extracted_messages().items()
              if any(name.startswith(PUBLIC_SOURCES) for name in files)}
    assert len(public) > 150  # the form, crisis notice, errors and pages: a broken extraction finds few
    missing = sorted(str(m) for m in public if catalog.get(m) is None or not is_translated(catalog.get(m)))
    assert not missing, f"untranslated (translate them in {SPANISH_PO.relative_to(ROOT)}): {missing}"
    problems = [(str(message.id), [str(e) for e in errors]) for message, errors in catalog.check()]
    assert not problems, f"translations whose placeholders do not match the English: {problems}"


def test_catalog_is_current_with_the_code_and_the_compiled_catalog_with_the_catalog():
    catalog = spanish_catalog()
    in_code = set(extracted_messages())
    in_catalog = {message.id for message in catalog if message.id}
    new, gone = sorted(map(str, in_code - in_catalog)), sorted(map(str, in_catalog - in_code))
    assert in_code == in_catalog, f"run `bin/dev i18n update`: new in the code {new}, gone {gone}"
    mo = SPANISH_PO.with_suffix(".mo")
    assert mo.exists(), "run `bin/dev i18n compile` (bin/dev serve and test do it)"
    with open(mo, "rb") as fh:
        compiled = {as_key(m.id): as_tuple(m.string) for m in read_mo(fh) if m.id}
    expected = {m.id: as_tuple(m.string) for m in catalog if m.id and is_translated(m)}
    assert compiled == expected, "the compiled catalog is stale: run `bin/dev i18n compile`"


def test_the_rule_files_words_are_in_the_catalog_and_their_codes_are_not():
    """Staff see the screening and benefits wording of ``data/*.json``: it is extracted like any message."""
    in_code = extracted_messages()
    rule_words = {word: files for word, files in in_code.items() if any(f.startswith("data/") for f in files)}
    for word in ("Little interest or pleasure in doing things", "Age 18 or over", "Contraindications",
                 "Documents pending", "Quoted benefits are not a guarantee of payment.",
                 "Day 1: call plus a fresh SMS or e-mail", "Warm-transfer to the on-call clinician now."):
        assert word in rule_words, word
    for code in ("docs_pending", "under_18", "yes_no_unknown", "J0013", "09:00", "q6_recent", "contraindication"):
        assert code not in rule_words, code
    assert not any(text.startswith("Spravato pre-screen rules") for text in rule_words)  # an editor's note


def test_clinic_texts_from_the_default_settings_are_in_the_catalog():
    assert DEFAULTS["CLINIC_HOURS"] in i18n.CONFIG_TEXTS
    assert DEFAULTS["LOCAL_CRISIS_LINE"] in i18n.CONFIG_TEXTS


@pytest.fixture
def untranslated(monkeypatch) -> list[str]:
    """Every message a Spanish page looked up that the project's catalog lacks (WTForms has its own)."""
    misses: list[str] = []
    real_gettext, real_ngettext = babel.support.Translations.ugettext, babel.support.Translations.ungettext

    def gettext(self, message):
        if self.domain == "messages" and self.files and not self._catalog.get(message):
            misses.append(message)
        return real_gettext(self, message)

    def ngettext(self, singular, plural, n):
        if self.domain == "messages" and self.files and not self._catalog.get((singular, 0)):
            misses.append(singular)
        return real_ngettext(self, singular, plural, n)

    monkeypatch.setattr(babel.support.Translations, "ugettext", gettext)
    monkeypatch.setattr(babel.support.Translations, "ungettext", ngettext)
    return misses


def test_every_public_page_rendered_in_spanish_finds_each_message_in_the_catalog(client, app, untranslated):
    responses = [
        client.get("/", headers=SPANISH),
        client.post("/", data={"form_token": fresh_token(app)}, headers=SPANISH),  # every required error
        client.post("/", data={**valid_form(phone="1", email="x", member_id="<", message="m" * 1001),
                               "form_token": fresh_token(app)}, headers=SPANISH),
        client.post("/", data={**valid_form(dob=years_ago(16), need_help_now="yes"), "form_token": fresh_token(app)},
                    headers=SPANISH),
        client.get("/privacy", headers=SPANISH),
        client.get("/no-such-page", headers=SPANISH),
        submit(client, app, need_help_now="yes"),
    ]
    responses.append(client.get("/thanks", headers=SPANISH))
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 404, 303, 200]
    assert all(html_lang(r) == "es" for r in responses if r.status_code != 303)
    assert untranslated == []


# --- choosing the language ---------------------------------------------------------------


def test_accept_language_es_gives_the_spanish_form(client):
    response = client.get("/", headers=SPANISH)
    assert html_lang(response) == "es"
    text = page(response)
    assert "<h1>Consúltenos sobre el tratamiento</h1>" in text
    assert "Enviar mi consulta" in text and "Send my enquiry" not in text
    assert "Consulta confidencial" in re.search(r"<title>([^<]+)</title>", text).group(1)
    assert "Accept-Language" in response.headers["Vary"]


@pytest.mark.parametrize("header", [None, "en-US,en;q=0.9", "fr-FR,fr;q=0.9", "*"])
def test_other_browsers_get_english(client, header):
    response = client.get("/", headers={"Accept-Language": header} if header else {})
    assert html_lang(response) == "en"
    assert "<h1>Ask us about treatment</h1>" in page(response)


@pytest.mark.parametrize("path", ["/", "/privacy", "/no-such-page"])
def test_every_public_page_links_to_the_other_language_without_javascript(client, path):
    english = page(client.get(path))
    assert f'<a href="{path}?lang=es" hreflang="es" lang="es">Español</a>' in english
    spanish = page(client.get(path, headers=SPANISH))
    assert f'<a href="{path}?lang=en" hreflang="en" lang="en">English</a>' in spanish


def test_switch_link_gives_spanish_and_the_cookie_remembers_it(client):
    response = client.get("/?lang=es", headers={"Accept-Language": "en-US"})
    assert html_lang(response) == "es"
    cookie = client.get_cookie(i18n.LANG_COOKIE)
    assert cookie.value == "es"  # the language code and nothing else
    assert cookie.http_only and cookie.same_site == "Lax"
    later = client.get("/privacy", headers={"Accept-Language": "en-US"})
    assert html_lang(later) == "es" and "<h1>Aviso de privacidad</h1>" in page(later)
    back = client.get("/?lang=en", headers=SPANISH)
    assert html_lang(back) == "en" and client.get_cookie(i18n.LANG_COOKIE).value == "en"
    assert html_lang(client.get("/", headers=SPANISH)) == "en"  # the choice outranks the browser


def test_an_unknown_language_in_the_url_or_cookie_is_ignored(client):
    response = client.get("/?lang=xx")
    assert html_lang(response) == "en" and client.get_cookie(i18n.LANG_COOKIE) is None
    client.set_cookie(i18n.LANG_COOKIE, "<script>")
    assert html_lang(client.get("/", headers=SPANISH)) == "es"


def test_a_linked_spanish_form_keeps_spanish_through_errors_and_thanks_without_cookies(client, app):
    form = page(client.get("/?lang=es"))
    assert 'action="/?lang=es"' in form
    client.delete_cookie(i18n.LANG_COOKIE)
    with_errors = client.post("/?lang=es", data={"form_token": fresh_token(app)})
    assert html_lang(with_errors) == "es"
    client.delete_cookie(i18n.LANG_COOKIE)
    sent = client.post("/?lang=es", data={**valid_form(), "form_token": fresh_token(app)})
    assert sent.status_code == 303 and sent.headers["Location"] == "/thanks?lang=es"
    client.delete_cookie(i18n.LANG_COOKIE)
    assert "Gracias. Hemos recibido su consulta." in page(client.get(sent.headers["Location"]))


def test_staff_pages_stay_english_for_a_spanish_browser(client):
    response = client.get("/auth/login?lang=es", headers=SPANISH)
    assert html_lang(response) == "en"
    assert "Skip to main content" in page(response)
    assert client.get_cookie(i18n.LANG_COOKIE) is None


# --- a Spanish-speaking patient ----------------------------------------------------------

SPANISH_ERRORS = [
    ({"first_name": ""}, "first_name", "Escriba su nombre."),
    ({"first_name": "x" * 81}, "first_name", "Use 80 caracteres o menos."),
    ({"dob": "31/02/1984"}, "dob",
     "Escriba su fecha de nacimiento como una fecha real (día/mes/año), por ejemplo 23/04/1985."),
    ({"dob": "2999-01-01"}, "dob", "La fecha de nacimiento no puede ser una fecha futura."),
    ({"phone": "123"}, "phone", "Escriba un número de teléfono al que podamos llamar, por ejemplo (949) 555-0100."),
    ({"email": "no-es-correo"}, "email", "Escriba un correo electrónico como nombre@ejemplo.com."),
    ({"zip_code": "9261"}, "zip_code", "Escriba un código postal de 5 dígitos."),
    ({"need_help_now": None}, "need_help_now", "Díganos si necesita ayuda ahora mismo."),
    ({"carrier": ""}, "carrier", "Escriba el nombre de su compañía de seguros."),
    ({"message": "m" * 1001}, "message", "Su mensaje debe tener 1.000 caracteres o menos."),
    ({"contact_consent": None, "preferred_contact": "text"}, "contact_consent",
     "Para recibir mensajes de texto, marque la casilla en la que acepta llamadas y mensajes de texto"),
    ({"privacy_ack": None}, "privacy_ack", "Confirme que ha leído el aviso de privacidad."),
    ({"preferred_contact": "fax"}, "preferred_contact", "Opción inválida."),
]


@pytest.mark.parametrize(("overrides", "field", "message"), SPANISH_ERRORS, ids=[c[1] for c in SPANISH_ERRORS])
def test_a_spanish_submission_with_an_error_shows_it_in_spanish_on_its_field(client, app, overrides, field, message):
    response = client.post("/", data={**valid_form(**overrides), "form_token": fresh_token(app)}, headers=SPANISH)
    assert response.status_code == 200 and html_lang(response) == "es"
    errors = dict(errors_in(response))
    assert errors.get(field, "").startswith(message), errors
    text = page(response)
    assert re.search(rf'aria-describedby="[^"]*{field}-error', text)
    summary = html.unescape(text[text.index('id="error-summary"'):])
    assert f'<a href="#{field}">{errors[field]}</a>' in summary  # the summary links to the field
    assert "<h2>Revise esta respuesta</h2>" in summary
    assert "<title>Revise sus respuestas: Consulta confidencial" in text
    with app.app_context():
        assert db.session.scalar(select(Lead.id)) is None  # nothing stored


def test_a_spanish_error_page_keeps_what_was_typed(client, app):
    response = client.post("/", data={**valid_form(email="no-es-correo"), "form_token": fresh_token(app)},
                           headers=SPANISH)
    assert f'value="{s.FIRST_NAME}"' in page(response) and 'value="no-es-correo"' in page(response)


def test_a_date_typed_without_the_picker_reads_day_first_in_spanish_and_month_first_in_english(client, app):
    assert client.post("/", data={**valid_form(dob="09/03/1984"), "form_token": fresh_token(app)},
                       headers=SPANISH).status_code == 303
    assert client.post("/", data={**valid_form(dob="03/09/1984", phone="(949) 555-0177", email="b@example.com"),
                                  "form_token": fresh_token(app)}).status_code == 303
    with app.app_context():
        assert {lead.dob.isoformat() for lead in db.session.scalars(select(Lead))} == {"1984-03-09"}


def test_numbers_follow_the_page_language(client):
    assert "Up to 1,000 characters." in page(client.get("/"))
    assert "Hasta 1.000 caracteres." in page(client.get("/", headers=SPANISH))  # CLDR Spanish grouping


def test_each_language_shows_its_own_consent_wording(client, app):
    spanish = html.unescape(page(client.get("/", headers=SPANISH)))
    assert f"Acepto que {app.config['CLINIC_NAME']} se comunique conmigo al número indicado arriba" in spanish
    assert "Responda STOP" in spanish and "may contact me" not in spanish
    english = html.unescape(page(client.get("/")))
    assert f"I agree that {app.config['CLINIC_NAME']} may contact me" in english


def test_the_stored_consent_records_spanish_and_its_version(client, app):
    response = client.post("/", data={**valid_form(), "form_token": fresh_token(app)}, headers=SPANISH)
    assert response.status_code == 303
    with app.app_context():
        enquiry = db.session.scalars(select(Enquiry)).one()
        assert (enquiry.consent_language, enquiry.consent_version) == ("es", app.config["CONSENT_VERSION_ES"])
        assert CONTACT_CONSENT[enquiry.consent_version].language == "es"
        assert db.session.scalars(select(Lead)).one().preferred_language == "es"


def test_the_stored_consent_records_english_and_its_version(client, app):
    assert submit(client, app).status_code == 303
    with app.app_context():
        enquiry = db.session.scalars(select(Enquiry)).one()
        assert (enquiry.consent_language, enquiry.consent_version) == ("en", app.config["CONSENT_VERSION"])
        assert db.session.scalars(select(Lead)).one().preferred_language == "en"


def test_a_returning_patient_keeps_the_language_staff_recorded(client, app):
    assert submit(client, app).status_code == 303
    with app.app_context():
        lead = db.session.scalars(select(Lead)).one()
        lead.preferred_language = "vi"
        db.session.commit()
    assert client.post("/", data={**valid_form(), "form_token": fresh_token(app)}, headers=SPANISH).status_code == 303
    with app.app_context():
        assert db.session.scalars(select(Lead)).one().preferred_language == "vi"
        assert {e.consent_language for e in db.session.scalars(select(Enquiry))} == {"en", "es"}


def test_every_offered_language_has_consent_wording_in_that_language(app):
    with app.app_context():
        for language in i18n.LANGUAGES:
            assert CONTACT_CONSENT[consent_version(language)].language == language


def tel_links(text: str) -> list[str]:
    main = text[text.index('<main id="main"'):]
    return re.findall(r'href="(?:tel|sms):([^"]+)"', main)


def test_the_spanish_crisis_path_leads_with_911_and_988(client, app):
    response = client.post("/", data={**valid_form(need_help_now="yes"), "form_token": fresh_token(app)},
                           headers=SPANISH)
    thanks = page(client.get(response.headers["Location"], headers=SPANISH))
    assert html_lang(client.get("/thanks", headers=SPANISH)) == "es"
    assert tel_links(thanks)[:2] == ["911", "988"]
    crisis = thanks.index("Hay ayuda disponible ahora mismo")
    assert crisis < thanks.index("Hemos recibido su consulta")
    section = thanks[crisis:thanks.index("</section>", crisis)]
    assert "llame al <a href=\"tel:911\"><strong>911</strong></a>" in section
    assert "oprima <strong>2</strong> para hablar en español" in section
    assert "AYUDA" in section and "988lineadevida.org" in section
    assert "Línea de Crisis para Veteranos" in section and "838255" in section
    assert "OC Links (855) 625-4657, las 24 horas, todos los días" in section
    with app.app_context():
        assert db.session.scalars(select(Lead)).one().urgent is True


def test_the_spanish_form_and_an_adults_only_answer_lead_with_911_and_988(client, app):
    form = page(client.get("/", headers=SPANISH))
    assert tel_links(form)[:2] == ["911", "988"] and "oprima 2 para hablar en español" in form
    minor = page(client.post("/", data={**valid_form(dob=years_ago(16), need_help_now="yes"),
                                        "form_token": fresh_token(app)}, headers=SPANISH))
    assert tel_links(minor)[:2] == ["911", "988"]
    assert "Nuestra clínica atiende a adultos" in minor


def test_the_rate_limited_page_is_in_spanish(config, tmp_path):
    from crm import create_app

    config.update(RATELIMIT_ENABLED=True, ENQUIRY_RATE_LIMIT="1 per hour")
    app = create_app(config, instance_path=str(tmp_path / "limited"))
    with app.app_context():
        db.create_all()
    client = app.test_client()
    assert client.post("/", data={**valid_form(), "form_token": fresh_token(app)}, headers=SPANISH).status_code == 303
    refused = client.post("/", data={**valid_form(), "form_token": fresh_token(app)}, headers=SPANISH)
    assert refused.status_code == 429 and html_lang(refused) == "es"
    assert "<h1>Demasiados intentos</h1>" in page(refused)
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def test_no_catalog_file_is_read_per_request_once_warm(client, app, monkeypatch):
    for headers in (SPANISH, {}):
        client.get("/", headers=headers)
        client.post("/", data={"preferred_contact": "fax", "form_token": fresh_token(app)}, headers=headers)
    parsed: list[str] = []
    real_parse = gettext_module.GNUTranslations._parse
    monkeypatch.setattr(gettext_module.GNUTranslations, "_parse",
                        lambda self, fp: (parsed.append(getattr(fp, "name", "?")), real_parse(self, fp))[1])
    for headers in (SPANISH, {}):
        assert client.get("/", headers=headers).status_code == 200
        invalid = client.post("/", data={"preferred_contact": "fax", "form_token": fresh_token(app)}, headers=headers)
        assert ("Opción inválida." if headers else "Not a valid choice.") in html.unescape(page(invalid))
    assert parsed == []


def test_a_forced_locale_is_followed_inside_a_page_in_another_language(app):
    """The page's catalog is found once per request, yet ``force_locale`` still switches it (and back)."""
    with app.test_request_context("/?lang=es"):
        spanish = gettext("Mobile phone")
        with force_locale("en"):
            assert gettext("Mobile phone") == "Mobile phone"
        assert gettext("Mobile phone") == spanish != "Mobile phone"
