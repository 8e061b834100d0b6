"""The words staff see in the rule data files (``data/*.json``): found once, for the catalog and for display.

The rules keep their wording beside their codes, so the medical director and the billing lead
each edit one file. Those words still go through gettext where a page shows them
(:func:`crm.i18n.translate`), and ``pybabel extract`` collects them with :func:`extract`
(named in ``babel.cfg``), so another staff language is a catalog away. Codes, clock times and
numbers are never words. The PHQ-9 and C-SSRS items are validated instruments: another
language takes the instrument's own published translation, word for word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO, Any

#: Keys whose string values are words wherever they appear.
WORD_KEYS = frozenset({"label", "group", "text", "title", "attribution", "trials_label", "trials_hint",
                       "recency_label", "disclaimer", "exhausted_text"})
#: Keys whose lists of strings are words (the PHQ-9 items; the C-SSRS triage steps by risk).
WORD_LISTS = frozenset({"items", "high", "moderate", "low"})
_HAS_WORD = re.compile(r"[^\W\d_]{2,}")


def _is_pairs(value: Any) -> bool:
    """True for a list of ``[code, words]`` pairs (answers, statuses, choices, questions)."""
    return isinstance(value, list) and bool(value) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str) for pair in value)


def words(data: Any, key: str = "") -> Iterator[str]:
    """Every word string of a rule file's ``data``, in file order (``about`` notes are for editors only)."""
    if isinstance(data, dict):
        for name, value in data.items():
            if name != "about":
                yield from words(value, name)
    elif _is_pairs(data):
        yield from (text for _code, text in data if _HAS_WORD.search(text))
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, str) and key in WORD_LISTS:
                yield item
            elif not isinstance(item, str):
                yield from words(item, key)
    elif isinstance(data, str) and key in WORD_KEYS and _HAS_WORD.search(data):
        yield data


def extract(fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: Any
            ) -> Iterator[tuple[int, str, str, list[str]]]:
    """Babel's extraction method for a rule file: each word string as a message (no source lines kept)."""
    for text in dict.fromkeys(words(json.load(fileobj))):
        yield 1, "gettext", text, []
