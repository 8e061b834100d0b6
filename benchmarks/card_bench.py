"""Cost of cleaning insurance card files (``crm.cards.clean_card``) against a baseline of decoding alone.

    .venv/bin/python benchmarks/card_bench.py            # --rounds 5

For each file (a 12-megapixel phone JPEG, a 48-megapixel one, a 4.9 MB PNG of noise, the worst case
for PNG encoding, a one-page PDF and a 30,000 × 30,000 PNG bomb) it measures, in CPU time, the median
of ``--rounds`` runs of:

- decode: Pillow decoding the picture (``Image.open(...).load()``); for the PDF, pypdf reading its pages;
  for the bomb, only opening its header;
- baseline: a bare Pillow re-encode (open, load, save in the same format, JPEG at the same quality), the
  least any re-encoding must cost; for the PDF and the bomb, the decode column again;
- clean: ``clean_card`` (checks, decodes within the pixel limit, turns upright, re-encodes without
  metadata; for PDFs, walks every object for active content).

Prints milliseconds and the ratio clean / baseline. Targets: cleaning a photo costs at most 1.5× the
bare re-encode, and the bomb is refused at most 10× the cost of reading its header, without decoding.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

from PIL import Image
from pypdf import PdfReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crm.cards import JPEG_QUALITY, CardRefused, clean_card  # noqa: E402
from tests import cardfiles  # noqa: E402


def cpu_ms(action, rounds: int) -> float:
    """Median CPU milliseconds of ``rounds`` runs of ``action``."""
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        action()
        samples.append((time.process_time() - start) * 1000)
    return statistics.median(samples)


def decode(content: bytes) -> None:
    with Image.open(io.BytesIO(content)) as image:
        image.load()


def read_pdf(content: bytes) -> None:
    len(PdfReader(io.BytesIO(content)).pages)


def open_header(content: bytes) -> None:
    Image.MAX_IMAGE_PIXELS, limit = None, Image.MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.size  # noqa: B018 - the header is all a refusal needs
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def reencode(content: bytes) -> None:
    with Image.open(io.BytesIO(content)) as image:
        image.load()
        image.save(io.BytesIO(), image.format, **({"quality": JPEG_QUALITY} if image.format == "JPEG" else {}))


def clean(content: bytes) -> None:
    try:
        clean_card(content)
    except CardRefused:
        pass


def photo(width: int, height: int) -> bytes:
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    return cardfiles.encoded(gradient, "JPEG", quality=92)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    files = [
        ("12 MP JPEG (4032x3024)", photo(4032, 3024), decode, reencode),
        ("48 MP JPEG (8064x6048)", photo(8064, 6048), decode, reencode),
        ("4.9 MB PNG (noise)", cardfiles.photo_of_size("PNG", int(4.9 * cardfiles.MB)), decode, reencode),
        ("one-page PDF", cardfiles.plain_pdf(), read_pdf, read_pdf),
        ("30000x30000 PNG bomb", cardfiles.png_bomb(), open_header, open_header),
    ]
    print(f"{'file':24} {'bytes':>9} {'decode ms':>10} {'baseline ms':>12} {'clean ms':>9} {'ratio':>6}")
    for name, content, decoding, baseline in files:
        decoded = cpu_ms(lambda c=content, d=decoding: d(c), rounds)
        base = cpu_ms(lambda c=content, b=baseline: b(c), rounds)
        cleaned = cpu_ms(lambda c=content: clean(c), rounds)
        print(f"{name:24} {len(content):>9} {decoded:>10.1f} {base:>12.1f} {cleaned:>9.1f} "
              f"{cleaned / max(base, 0.01):>6.2f}")


if __name__ == "__main__":
    main()
