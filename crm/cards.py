"""Insurance card files: check an upload by its content and clean it before it is stored.

Images are decoded and re-encoded with Pillow, which drops every piece of metadata (EXIF with
its GPS position, comments, text chunks, colour profiles), turns the picture upright as the
camera's orientation tag said, and refuses decompression bombs before decoding. PDFs are
parsed with pypdf and refused when they hold scripts, automatic actions or embedded files;
they are kept as sent and only ever served as downloads. No database, no request.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import filetype
from PIL import Image, ImageOps
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

MAX_CARD_BYTES = 5 * 1024 * 1024
#: A 48-megapixel phone camera (8064 × 6048) fits; a 30,000 × 30,000 "bomb" does not.
MAX_CARD_PIXELS = 50_000_000
#: Longest side of a stored image: a 12-megapixel photo (4032 × 3024) is kept at full size, and a
#: 48-megapixel one is decoded at half scale straight from the JPEG data.
MAX_STORED_EDGE = 4032
JPEG_QUALITY = 90
#: Objects a card scan's PDF may hold; real scans have tens, a hostile file can have millions.
MAX_PDF_OBJECTS = 20_000
#: Dictionary keys that run code or open other content when a reader shows the file.
ACTIVE_PDF_KEYS = frozenset({"/JS", "/JavaScript", "/OpenAction", "/AA", "/EmbeddedFiles", "/EmbeddedFile",
                             "/EF", "/RichMedia", "/XFA"})
#: Action types that run code, launch programs, submit data or fetch other files.
ACTIVE_PDF_ACTIONS = frozenset({"/JavaScript", "/Launch", "/SubmitForm", "/ImportData", "/GoToR", "/GoToE",
                                "/RichMediaExecute", "/Rendition", "/Sound", "/Movie"})
IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}
CARD_TYPES = ("image/jpeg", "image/png", "application/pdf")


class CardRefused(ValueError):
    """An upload that cannot be stored; ``reason`` names why, for the form to word the message."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CleanCard:
    """A card file that is safe to store: its media type and the bytes to keep."""

    media_type: str
    content: bytes


def clean_card(content: bytes) -> CleanCard:
    """Return the stored form of an uploaded card file, or raise :class:`CardRefused`."""
    if len(content) > MAX_CARD_BYTES:
        raise CardRefused("too_large")
    kind = filetype.guess(content[:8192])
    if kind is None or kind.mime not in CARD_TYPES:
        raise CardRefused("wrong_type")
    if kind.mime == "application/pdf":
        check_pdf(content)
        return CleanCard(kind.mime, content)
    return clean_image(content)


def clean_image(content: bytes) -> CleanCard:
    """Decode a JPEG or PNG within the pixel limit and re-encode it upright and without metadata."""
    try:
        with Image.open(io.BytesIO(content), formats=tuple(IMAGE_FORMATS)) as image:
            if image.width * image.height > MAX_CARD_PIXELS:
                raise CardRefused("too_many_pixels")
            kind = image.format
            return CleanCard(IMAGE_FORMATS[kind], _reencode(image, kind))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CardRefused("too_many_pixels") from None
    except CardRefused:
        raise
    except Exception:  # a hostile file can make a decoder raise anything: it is unreadable
        raise CardRefused("unreadable") from None


def _reencode(image: Image.Image, kind: str) -> bytes:
    """Draw the picture afresh (upright, at most MAX_STORED_EDGE) and save only its pixels."""
    if kind == "JPEG":
        image.draft("RGB", _fitted(image.size))  # decode big photos at a reduced scale
    ImageOps.exif_transpose(image, in_place=True)
    mode = _output_mode(image, kind)
    upright = image.convert(mode) if image.mode != mode else image
    upright.thumbnail((MAX_STORED_EDGE, MAX_STORED_EDGE))
    upright.info.clear()  # EXIF, GPS, comments, text chunks, ICC profile: nothing but pixels goes out
    out = io.BytesIO()
    if kind == "JPEG":
        upright.save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        upright.save(out, "PNG")
    return out.getvalue()


def _fitted(size: tuple[int, int]) -> tuple[int, int]:
    """``size`` scaled down, keeping its shape, so that its longest side is at most MAX_STORED_EDGE."""
    scale = min(1.0, MAX_STORED_EDGE / max(size))
    return max(1, int(size[0] * scale)), max(1, int(size[1] * scale))


def _output_mode(image: Image.Image, kind: str) -> str:
    """The mode the stored file uses: grey stays grey, transparency survives only in PNG."""
    if image.mode in ("1", "L", "I;16", "I"):
        return "L"
    if kind == "PNG" and (image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info):
        return "RGBA"
    return "RGB"


def check_pdf(content: bytes) -> None:
    """Refuse a PDF that is unreadable, password-protected, too complex, or holds active content."""
    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        if reader.is_encrypted:
            raise CardRefused("pdf_encrypted")
        if not reader.pages:
            raise CardRefused("unreadable")
        active = _has_active_content(reader.trailer)
    except CardRefused:
        raise
    except Exception:  # pypdf raises many kinds of errors on malformed files
        raise CardRefused("unreadable") from None
    if active:
        raise CardRefused("pdf_active")


def _has_active_content(root: Any) -> bool:
    """Walk every object reachable from the trailer, looking for scripts, actions and attachments."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, IndirectObject):
            ref = (item.idnum, item.generation)
            if ref in seen:
                continue
            seen.add(ref)
            if len(seen) > MAX_PDF_OBJECTS:
                raise CardRefused("unreadable")
            item = item.get_object()
        if isinstance(item, DictionaryObject):
            if ACTIVE_PDF_KEYS.intersection(item.keys()) or _resolved(dict.get(item, "/S")) in ACTIVE_PDF_ACTIONS:
                return True
            stack.extend(dict.values(item))  # unresolved, so references are visited once
        elif isinstance(item, ArrayObject):
            stack.extend(list.__iter__(item))
    return False


def _resolved(value: Any) -> str | None:
    """A name's text, following one indirect reference; None for anything that is not a name."""
    if isinstance(value, IndirectObject):
        value = value.get_object()
    return str(value) if isinstance(value, str) else None
