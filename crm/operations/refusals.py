"""Refusals a form shows back: one tied to the answers that caused it, one saying the page is out of date."""

from __future__ import annotations


class Refused(ValueError):
    """An operation refused what was typed; ``fields`` names the answers at fault (none: the whole form)."""

    def __init__(self, message: str, *fields: str):
        super().__init__(message)
        self.fields = fields


class Stale(ValueError):
    """What the page showed changed meanwhile (an appointment settled, a stage moved), so its form no longer applies."""
