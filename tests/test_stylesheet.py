"""The stylesheet's own rules: colours only as :root variables, mobile-first media queries, and focus
rings with at least 3:1 contrast against every background colour the stylesheet paints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = (Path(__file__).resolve().parents[1] / "crm" / "static" / "crm.css").read_text(encoding="utf-8")
ROOT_BLOCK = re.compile(r":root\s*\{(?P<body>[^}]*)\}")
NAMED_COLOURS = ("white", "black", "red", "green", "blue", "yellow", "orange", "gray", "grey", "silver", "navy",
                 "teal", "maroon", "purple", "olive", "lime", "aqua", "fuchsia", "pink", "brown", "gold")
LITERAL_COLOUR = re.compile(r"#[0-9a-fA-F]{3,8}\b|\b(?:rgb|rgba|hsl|hsla|hwb|lab|lch|oklab|oklch)\(|"
                            rf"(?<![\w-])(?:{'|'.join(NAMED_COLOURS)})(?![\w-])", re.IGNORECASE)
#: Light backgrounds a focused control can sit on, and the dark staff header.
LIGHT_BACKGROUNDS = ("--bg", "--panel", "--head-bg", "--hover-bg", "--danger-bg", "--warn-bg", "--ok-bg",
                     "--info-bg", "--badge-bg", "--language-bg")
DARK_BACKGROUNDS = ("--header-bg",)


def without_comments(css: str) -> str:
    return re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)


def variables() -> dict[str, str]:
    """The custom properties of the :root block."""
    body = ROOT_BLOCK.search(without_comments(CSS))["body"]
    return dict(re.findall(r"(--[\w-]+)\s*:\s*([^;]+);", body))


def resolved(name: str) -> str:
    """A variable's value with ``var(--other)`` references followed."""
    value = variables()[name].strip()
    while match := re.fullmatch(r"var\((--[\w-]+)\)", value):
        value = variables()[match[1]].strip()
    return value


def luminance(hex_colour: str) -> float:
    """WCAG relative luminance of a #rrggbb colour."""
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_colours_are_named_only_in_the_root_variables():
    outside = ROOT_BLOCK.sub("", without_comments(CSS))
    declarations = re.findall(r"[\w-]+\s*:\s*[^;{}]+", re.sub(r"[^{}]*\{", "{", outside))
    literal = [d.strip() for d in declarations if LITERAL_COLOUR.search(d.split(":", 1)[1])]
    assert not literal, literal


def test_media_queries_are_mobile_first():
    queries = re.findall(r"@media[^{]*", without_comments(CSS))
    assert any("min-width" in q for q in queries)
    assert not [q for q in queries if "max-width" in q or "max-device-width" in q], queries


def test_every_focus_ring_uses_the_focus_variable():
    rules = re.findall(r"([^{}]*:focus-visible[^{}]*)\{([^}]*)\}", without_comments(CSS))
    outlines = [body for _, body in rules if "outline:" in body.replace(" ", "") or "outline-color" in body]
    assert outlines and all("var(--focus)" in body for body in outlines), rules
    assert re.search(r"\.staff-header\s*\{[^}]*--focus:\s*var\(--focus-on-dark\)", CSS)
    assert resolved("--focus") == resolved("--focus-on-light")


@pytest.mark.parametrize("background", LIGHT_BACKGROUNDS)
def test_the_focus_ring_stands_out_on_light_backgrounds(background):
    assert contrast(resolved("--focus-on-light"), resolved(background)) >= 3.0


@pytest.mark.parametrize("background", DARK_BACKGROUNDS)
def test_the_focus_ring_stands_out_on_the_dark_header(background):
    assert contrast(resolved("--focus-on-dark"), resolved(background)) >= 3.0
