"""A refusal tied to the answers that caused it, so the form that sent them can show it at each one."""

from __future__ import annotations


class Refused(ValueError):
    """An operation refused what was typed; ``fields`` names the answers at fault (none: the whole form)."""

    def __init__(self, message: str, *fields: str):
        super().__init__(message)
        self.fields = fields
