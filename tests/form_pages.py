"""Read a re-rendered staff form back out of its HTML: the values it shows, its field errors, its summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from sqlalchemy import func, select

from crm.models import AuditEvent, db

#: Audit actions that record reading a page, not changing anything.
READ_ACTIONS = frozenset({"lead_viewed", "leads_listed", "decrypt_failed", "lead_edit_opened"})


@dataclass
class Control:
    """One input, select or textarea of a page."""

    tag: str
    attrs: dict[str, str]
    form: str | None
    options: list[tuple[str, bool]] = field(default_factory=list)  # (value, selected) of a select
    text: str = ""  # a textarea's content


@dataclass
class Page:
    """Every form control of a page, every element id, and each error summary's items."""

    controls: list[Control] = field(default_factory=list)
    ids: dict[str, dict[str, str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    summaries: dict[str | None, list[str]] = field(default_factory=dict)
    summary_links: list[str] = field(default_factory=list)  # the ids the summaries' items link to

    def named(self, name: str, form: str | None = None) -> list[Control]:
        """The controls named ``name``, inside the form posting to ``form`` when given."""
        return [c for c in self.controls if c.attrs.get("name") == name and (form is None or c.form == form)]

    def value(self, name: str, form: str | None = None) -> Any:
        """What the browser would send for ``name``: a text, a selected option, or the checked values."""
        controls = self.named(name, form)
        assert controls, f"no control named {name!r}"
        first = controls[0]
        if first.tag == "select":
            return next((value for value, chosen in first.options if chosen), None)
        if first.tag == "textarea":
            text = first.text  # a browser drops one newline right after <textarea>, as WTForms writes it
            return text[2:] if text.startswith("\r\n") else text[1:] if text.startswith("\n") else text
        if first.attrs.get("type") in ("checkbox", "radio"):
            return [c.attrs.get("value", "on") for c in controls if "checked" in c.attrs]
        return first.attrs.get("value", "")

    def offered(self, name: str, form: str | None = None) -> list[str]:
        """The option values a select offers."""
        return [value for value, _chosen in self.named(name, form)[0].options]

    def field_error(self, name: str, form: str | None = None) -> str | None:
        """The error message tied to the control ``name`` through its aria-describedby (``None`` if none)."""
        first = self.named(name, form)[0]
        holder = first.attrs if "aria-describedby" in first.attrs else self.ids.get(name, {})  # a fieldset's id
        described = (holder.get("aria-describedby") or "").split()
        errors = [self.texts.get(ref, "") for ref in described if ref.endswith("-error")]
        assert all(ref in self.ids for ref in described), f"{name}: describedby names a missing id"
        return errors[0].strip() if errors else None


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.form: str | None = None
        self.select: Control | None = None
        self.option: list[Any] | None = None
        self.textarea: Control | None = None
        self.capture: list[tuple[str, str, list[str]]] = []  # (id, tag, text parts) of open elements with an id
        self.summary: str | None | bool = False
        self.item: list[str] | None = None

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v if v is not None else "" for k, v in attrs_list}
        if "id" in attrs:
            self.page.ids[attrs["id"]] = attrs
            self.capture.append((attrs["id"], tag, []))
        if tag == "form":
            self.form = attrs.get("action", "")
        elif tag == "div" and "error-summary" in attrs.get("class", ""):
            self.summary = self.form
            self.page.summaries[self.form] = []
        elif tag == "li" and self.summary is not False:
            self.item = []
        elif tag == "a" and self.item is not None:
            self.page.summary_links.append(attrs.get("href", "").removeprefix("#"))
        elif tag == "input":
            self.page.controls.append(Control("input", attrs, self.form))
        elif tag == "select":
            self.select = Control("select", attrs, self.form)
            self.page.controls.append(self.select)
        elif tag == "option" and self.select is not None:
            self.option = [attrs.get("value", ""), "selected" in attrs]
            self.select.options.append(tuple(self.option))
        elif tag == "textarea":
            self.textarea = Control("textarea", attrs, self.form)
            self.page.controls.append(self.textarea)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.form = None
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None
        elif tag == "li" and self.item is not None:
            self.page.summaries[self.summary].append(" ".join("".join(self.item).split()))
            self.item = None
        elif tag == "div" and self.summary is not False and self.item is None:
            self.summary = False
        for index in range(len(self.capture) - 1, -1, -1):
            ident, open_tag, parts = self.capture[index]
            if open_tag == tag:
                self.page.texts[ident] = "".join(parts)
                del self.capture[index]
                break

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.textarea.text += data
        if self.item is not None:
            self.item.append(data)
        for _ident, _tag, parts in self.capture:
            parts.append(data)


def read(html: str) -> Page:
    """Parse a page's forms."""
    reader = _Reader()
    reader.feed(html)
    return reader.page


def snapshot(app) -> tuple[dict[str, int], list[str]]:
    """Row counts of every table (audit apart) and the audit actions that record a change."""
    with app.app_context():
        counts = {table.name: db.session.scalar(select(func.count()).select_from(table))
                  for table in db.metadata.sorted_tables if table.name != "audit_events"}
        changes = [action for action in db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq))
                   if action not in READ_ACTIONS]
    return counts, changes
