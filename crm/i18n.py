"""The language of each page: Flask-Babel, the locale choice, and the switch between languages.

Patient pages follow ``Accept-Language`` unless the patient chose a language with the
"Español / English" link (``?lang=es``), which is remembered in a cookie that holds only
the language code. The link's URL is what the clinic's own site can link to. Staff pages
stay English; their strings still go through the same gettext calls, so another staff
language is a catalog away.

Messages live in ``crm/translations/<lang>/LC_MESSAGES/messages.po`` and are compiled to
``.mo`` by ``bin/dev i18n`` (which ``bin/dev serve`` and ``bin/dev test`` run when a catalog changed).
"""

from __future__ import annotations

import functools

from babel import support
from flask import Flask, current_app, g, has_request_context, request
from flask_babel import Babel, Domain, LazyString, format_decimal, get_locale, gettext
from jinja2 import pass_context
from jinja2.runtime import Context
from werkzeug.wrappers import Response
from wtforms.i18n import messages_path


class PageDomain(Domain):
    """Flask-Babel's message domain, finding each request's catalog once.

    Flask-Babel looks the catalog up anew for every message (the locale, its cache key and
    nine context lookups), a quarter of a busy staff page's time. The catalog is kept in the
    slot Flask-Babel reserves for it beside the locale, which its ``refresh`` and
    ``force_locale`` clear along with the locale, so the two never disagree.
    """

    def get_translations(self) -> support.NullTranslations:
        try:
            babel_context = g._flask_babel
        except RuntimeError:  # no application context: Flask-Babel's untranslated fallback
            return super().get_translations()
        except AttributeError:  # the context's first message: Flask-Babel sets its namespace up below
            babel_context = None
        catalog = getattr(babel_context, "babel_translations", None)
        if catalog is None:
            catalog = super().get_translations()
            g._flask_babel.babel_translations = catalog
        return catalog


class PageBabel(Babel):
    """Flask-Babel with :class:`PageDomain` as its message domain."""

    @functools.cached_property
    def domain_instance(self) -> Domain:
        return PageDomain(domain=self.domain)


babel = PageBabel()


def catalog() -> support.NullTranslations:
    """This page's message catalog."""
    return babel.domain_instance.get_translations()

#: Languages patients can choose, by code, each named in its own language.
LANGUAGES = {"en": "English", "es": "Español"}
DEFAULT_LANGUAGE = "en"
#: The URL parameter that picks a language, and the cookie that remembers it (no PHI, only the code).
LANG_PARAM = "lang"
LANG_COOKIE = "crm_lang"
LANG_COOKIE_DAYS = 365
#: Blueprints whose pages are for staff: always English.
STAFF_BLUEPRINTS = frozenset({"leads", "admin", "auth"})


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "extract, translate later"
    """Mark a message for the catalog without translating it here."""
    return message


#: The default settings patients read (``CLINIC_HOURS``, ``LOCAL_CRISIS_LINE``), marked so the catalog
#: carries their translations; a clinic that changes them adds its own wording to the catalog.
CONFIG_TEXTS = (N_("Monday to Friday, 8 am to 6 pm"), N_("OC Links (855) 625-4657, 24/7"))


def chosen_language() -> str | None:
    """The language picked explicitly on this request's URL, if it is one we offer."""
    code = request.args.get(LANG_PARAM, "")
    return code if code in LANGUAGES else None


def select_locale() -> str:
    """The page language: English for staff; else the URL's choice, the cookie, then ``Accept-Language``."""
    if not has_request_context() or request.blueprint in STAFF_BLUEPRINTS:
        return DEFAULT_LANGUAGE
    remembered = request.cookies.get(LANG_COOKIE, "")
    return (chosen_language() or (remembered if remembered in LANGUAGES else None)
            or request.accept_languages.best_match(LANGUAGES, default=DEFAULT_LANGUAGE))


def page_language() -> str:
    """The two-letter code of the language this request is rendered in."""
    return str(get_locale() or DEFAULT_LANGUAGE)


def language_args() -> dict[str, str]:
    """URL arguments that keep an explicit language choice on the next page (for cookie-less browsers)."""
    code = chosen_language()
    return {LANG_PARAM: code} if code else {}


def switch_links() -> list[dict[str, object]]:
    """This page in every language, the current one marked (plain links: no JavaScript needed)."""
    current = page_language()
    return [{"code": code, "name": name, "href": f"{request.path}?{LANG_PARAM}={code}", "current": code == current}
            for code, name in LANGUAGES.items()]


def remember_choice(response: Response) -> Response:
    """Keep a language picked with the switch link in a cookie holding only its code."""
    if request.blueprint in STAFF_BLUEPRINTS or request.endpoint == "static":
        return response
    response.vary.update(("Accept-Language", "Cookie"))
    code = chosen_language()
    if code and request.cookies.get(LANG_COOKIE) != code:
        response.set_cookie(LANG_COOKIE, code, max_age=LANG_COOKIE_DAYS * 86400, path="/",
                            secure=bool(current_app.config["HTTPS"]), httponly=True, samesite="Lax")
    return response


def translate(value: str | None) -> str:
    """A text that is not written in the code (a clinic setting, a rule file's words) in the page
    language when the catalog has it, else as written."""
    return gettext(value) if value else ""


def lazy_translate(value: str) -> LazyString:
    """:func:`translate`, read when shown: for form labels and choices built once at import."""
    return LazyString(translate, value)


@pass_context  # a context filter is never folded into the compiled template (``5|number`` is a constant)
def number(_context: Context, value: float) -> str:
    """A number written the page language's way (``1,000`` in English, ``1.000`` in Spanish)."""
    return format_decimal(value)


@functools.cache
def wtforms_catalog(language: str) -> support.Translations:
    """WTForms' own messages (such as "Not a valid choice.") in ``language``, read once per process."""
    return support.Translations.load(messages_path(), [language], domain="wtforms")


def share_wtforms_catalog() -> None:
    """Hand Flask-WTF this request's WTForms catalog from the cache; left alone, it reads the file every request."""
    request.wtforms_translations = wtforms_catalog(page_language())


def init_app(app: Flask) -> None:
    """Install Flask-Babel (catalogs in ``crm/translations``) and the language helpers for templates."""
    babel.init_app(app, locale_selector=select_locale, default_domain="messages")
    app.jinja_env.install_gettext_callables(  # templates reach the page's catalog without Flask-Babel's lookups
        gettext=lambda s: catalog().ugettext(s), ngettext=lambda s, p, n: catalog().ungettext(s, p, n),
        pgettext=lambda c, s: catalog().upgettext(c, s),
        npgettext=lambda c, s, p, n: catalog().unpgettext(c, s, p, n), newstyle=True)
    app.jinja_env.policies["ext.i18n.trimmed"] = True  # msgids without template indentation
    app.jinja_env.globals.update(page_language=page_language, language_links=switch_links,
                                 language_args=language_args)
    app.add_template_filter(translate)
    app.add_template_filter(number)
    app.before_request(share_wtforms_catalog)
    app.after_request(remember_choice)
