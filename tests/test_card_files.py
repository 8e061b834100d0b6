"""Insurance card files from the public form: real photo sizes accepted, every file cleaned before it is stored.

The files are real JPEGs, PNGs and PDFs made here with Pillow and pypdf, as phones, screenshot
tools and scanner apps write them.
"""

from __future__ import annotations

import functools
import io

import pytest
from PIL import Image
from sqlalchemy import select, text

from crm.models import InsuranceCard, Lead, db
from tests import cardfiles
from tests.test_public_form import assert_nothing_stored, errors_in, row_counts, submit

MB = cardfiles.MB
TOO_LARGE = "Each card photo must be 5 MB or smaller."
TOO_MANY_PIXELS = ("This picture has too many pixels for us to open (over 50 megapixels). "
                   "Please send a smaller photo or a screenshot of it.")
PDF_ACTIVE = ("This PDF contains scripts or attached files, which we can't accept. "
              "Please send a photo of your card or a plain scan.")


@functools.cache
def photo(kind: str, megabytes: float) -> bytes:
    """A real JPEG or PNG just under ``megabytes``, made once per run."""
    return cardfiles.photo_of_size(kind, int(megabytes * MB))


def upload(content: bytes, name: str = "card.jpg") -> tuple:
    return (io.BytesIO(content), name, "application/octet-stream")


def stored_cards(app) -> dict[str, tuple[str, bytes]]:
    """Each stored card's media type and content, decrypted from the raw ``content_enc`` bytes."""
    with app.app_context():
        lead = db.session.scalars(select(Lead)).one()
        rows = db.session.execute(text("SELECT id, side, media_type, content_enc FROM insurance_cards")).all()
        cipher = lead.field_cipher()
        return {side: (media_type, cipher.decrypt("insurance_cards", "content", card_id, bytes(blob)))
                for card_id, side, media_type, blob in rows}


# --- 1. real photo sizes -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
@pytest.mark.parametrize("megabytes", [0.5, 2, 4.9])
def test_real_card_photos_up_to_5_mb_are_accepted(client, app, kind, megabytes):
    content = photo(kind, megabytes)
    assert 0.97 * megabytes * MB <= len(content) <= megabytes * MB
    response = submit(client, app, card_front=upload(content, f"front.{kind.lower()}"))
    assert response.status_code == 303, errors_in(response)
    media_type, stored = stored_cards(app)["front"]
    assert media_type == f"image/{kind.lower()}"
    with Image.open(io.BytesIO(content)) as sent, Image.open(io.BytesIO(stored)) as kept:
        assert kept.format == kind and kept.size == sent.size


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_a_photo_over_5_mb_is_refused_next_to_its_field(client, app, kind):
    content = photo(kind, 5.1)
    assert len(content) > 5 * MB
    response = submit(client, app, card_back=upload(content))
    assert response.status_code == 200
    assert errors_in(response) == [("card_back", TOO_LARGE)]
    assert_nothing_stored(app)


# --- 3. metadata, orientation, pixel bombs, PDFs ----------------------------------------------------


def test_gps_and_every_other_metadata_are_stripped_and_the_photo_turned_upright(client, app):
    sent = cardfiles.photo_with_location(240, 120, comment=b"CommentSentinel")
    with Image.open(io.BytesIO(sent)) as original:  # the file really carries what a phone writes
        assert original.getexif().get_ifd(cardfiles.GPS_IFD)[2] == (33.0, 41.0, 4.2)
        assert original.getexif()[cardfiles.ORIENTATION] == 6
    assert submit(client, app, card_front=upload(sent, "IMG_0001.jpg")).status_code == 303
    media_type, stored = stored_cards(app)["front"]
    assert media_type == "image/jpeg"
    for trace in (b"Exif", b"GPS", b"PhoneMaker", b"CommentSentinel"):
        assert trace not in stored, trace
    with Image.open(io.BytesIO(stored)) as kept:
        assert not kept.getexif() and "exif" not in kept.info and "comment" not in kept.info
        assert kept.size == (120, 240)  # orientation 6: the 240 × 120 sensor image, turned upright
        red, green, blue = kept.convert("RGB").getpixel((60, 5))
        assert blue > 150 and red < 80  # the band on the sensor's left edge is now along the top


def test_png_text_chunks_and_exif_are_stripped(client, app):
    sent = cardfiles.png_with_text("TextChunkSentinel")
    assert b"TextChunkSentinel" in sent and b"eXIf" in sent
    assert submit(client, app, card_front=upload(sent, "shot.png")).status_code == 303
    _, stored = stored_cards(app)["front"]
    assert b"TextChunkSentinel" not in stored and b"eXIf" not in stored and b"tEXt" not in stored
    with Image.open(io.BytesIO(stored)) as kept, Image.open(io.BytesIO(sent)) as original:
        assert kept.tobytes() == original.convert(kept.mode).tobytes()


def test_a_30000_by_30000_png_is_refused_with_a_clear_message(client, app):
    bomb = cardfiles.png_bomb(30_000, 30_000)
    assert len(bomb) < 1 * MB
    response = submit(client, app, card_front=upload(bomb, "card.png"))
    assert response.status_code == 200
    assert errors_in(response) == [("card_front", TOO_MANY_PIXELS)]
    assert_nothing_stored(app)


def test_a_48_megapixel_phone_photo_is_accepted_and_kept_at_12_megapixels(client, app):
    gradient = Image.linear_gradient("L").resize((8064, 6048)).convert("RGB")
    sent = cardfiles.encoded(gradient, "JPEG", quality=90)
    assert submit(client, app, card_front=upload(sent)).status_code == 303
    with Image.open(io.BytesIO(stored_cards(app)["front"][1])) as kept:
        assert kept.size == (4032, 3024)


@pytest.mark.parametrize("extra", ["open_action", "attachment", "page_action", "launch_link"])
def test_pdfs_with_scripts_actions_or_embedded_files_are_refused(client, app, extra):
    response = submit(client, app, card_back=upload(cardfiles.pdf_with(extra), "card.pdf"))
    assert response.status_code == 200
    assert errors_in(response) == [("card_back", PDF_ACTIVE)]
    assert_nothing_stored(app)


def test_a_broken_file_is_refused_as_unreadable(client, app):
    truncated = photo("JPEG", 0.5)[: 200_000]
    response = submit(client, app, card_front=upload(truncated))
    assert errors_in(response) == [
        ("card_front", "We couldn't open this file. Please choose another photo or scan of your card.")]
    assert_nothing_stored(app)


@pytest.fixture
def staff(client, make_user, login_as):
    login_as(client, make_user())
    return client


def test_a_plain_pdf_is_kept_as_sent_and_served_only_as_a_download(app, staff):
    pdf = cardfiles.plain_pdf()
    front = photo("JPEG", 0.5)
    assert submit(staff, app, card_back=upload(pdf, "scan.pdf"), card_front=upload(front)).status_code == 303
    assert stored_cards(app)["back"] == ("application/pdf", pdf)
    with app.app_context():
        lead_id = db.session.scalar(select(Lead.id))
        cards = {card.side: card.id for card in db.session.scalars(select(InsuranceCard))}
    assert staff.post(f"/leads/{lead_id}/reveal").status_code == 302
    download = staff.get(f"/leads/{lead_id}/cards/{cards['back']}")
    assert download.status_code == 200 and download.data == pdf
    assert download.headers["Content-Disposition"] == 'attachment; filename="card-back.pdf"'
    assert download.mimetype == "application/octet-stream"
    picture = staff.get(f"/leads/{lead_id}/cards/{cards['front']}")
    assert picture.mimetype == "image/jpeg"
    assert picture.headers["Content-Disposition"] == 'inline; filename="card-front.jpg"'
    assert row_counts(app)["insurance_cards"] == 2
