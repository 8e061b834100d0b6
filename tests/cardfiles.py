"""Real card files made in the test: JPEGs and PNGs of chosen sizes, photos with GPS, bombs, PDFs."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DictionaryObject, NameObject, TextStringObject

MB = 1024 * 1024
GPS_IFD = 0x8825
ORIENTATION = 0x0112
#: Latitude 33° 41' 4.2" N, longitude 117° 49' 35.9" W: the kind of position a phone writes.
GPS = {1: "N", 2: (33.0, 41.0, 4.2), 3: "W", 4: (117.0, 49.0, 35.9)}


def noise(width: int, height: int, seed: int = 7) -> Image.Image:
    """An RGB picture of random pixels: it compresses badly, so its file size follows its pixel count."""
    return Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))


def encoded(image: Image.Image, kind: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **params)
    return out.getvalue()


def photo_of_size(kind: str, target: int) -> bytes:
    """A real JPEG or PNG of noise whose size is within 3 % below ``target`` bytes."""
    params = {"quality": 95} if kind == "JPEG" else {"compress_level": 1}
    width = 2048
    height = max(16, target // (width * 3))
    for _ in range(8):
        data = encoded(noise(width, height), kind, **params)
        if 0.97 * target <= len(data) <= target:
            return data
        height = max(16, int(height * (0.985 * target) / len(data)))
    raise AssertionError(f"could not make a {kind} of about {target} bytes (last {len(data)})")


def photo_with_location(width: int = 240, height: int = 120, comment: bytes = b"") -> bytes:
    """A JPEG as a phone writes it: EXIF with GPS position and 'rotate 90° clockwise' orientation."""
    image = Image.new("RGB", (width, height), (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, width // 4, height))  # a blue band on the left edge
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(GPS_IFD).update(GPS)
    return encoded(image, "JPEG", exif=exif.tobytes(), comment=comment, quality=92)


def png_with_text(text: str, width: int = 64, height: int = 40) -> bytes:
    """A PNG carrying ``text`` in a tEXt chunk and EXIF, as screenshot tools and editors write them."""
    info = PngInfo()
    info.add_text("Comment", text)
    exif = Image.Exif()
    exif.get_ifd(GPS_IFD).update(GPS)
    return encoded(noise(width, height, seed=3), "PNG", pnginfo=info, exif=exif.tobytes())


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid one-bit PNG of ``width`` × ``height`` white pixels: ~110 KB that decodes to ~112 MB."""
    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row * 1000) for _ in range(height // 1000)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def plain_pdf(title: str = "Insurance card") -> bytes:
    """A one-page scan as a scanner app writes it: a picture in a PDF, a plain-text title in its metadata."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(encoded(noise(120, 80), "PDF"))))
    writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_with(extra: str) -> bytes:
    """A one-page PDF with an active part: a script run on open, an embedded file, or a page action."""
    writer = PdfWriter()
    page = writer.add_blank_page(200, 120)
    script = DictionaryObject({NameObject("/S"): NameObject("/JavaScript"),
                               NameObject("/JS"): TextStringObject("app.alert('hello');")})
    if extra == "open_action":
        writer._root_object[NameObject("/OpenAction")] = writer._add_object(script)
    elif extra == "attachment":
        writer.add_attachment("notes.txt", b"an embedded file")
    elif extra == "page_action":
        page[NameObject("/AA")] = DictionaryObject({NameObject("/O"): writer._add_object(script)})
    elif extra == "launch_link":
        launch = DictionaryObject({NameObject("/S"): NameObject("/Launch"),
                                   NameObject("/F"): TextStringObject("cmd.exe")})
        writer._root_object[NameObject("/Outlines")] = writer._add_object(DictionaryObject({
            NameObject("/Type"): NameObject("/Outlines"), NameObject("/A"): writer._add_object(launch)}))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
