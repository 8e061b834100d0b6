"""Import leads from a CSV file: upload, preview the first rows and every refused row, then confirm."""

from __future__ import annotations

import uuid

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from .. import audit
from ..forms.admin import ImportForm
from ..forms.leads import ConfirmForm
from ..models import ImportUpload, db, utcnow
from ..operations import imports
from . import bp

PREVIEW_ROWS = 10
UPLOAD_HOURS = 2


@bp.route("/import", methods=["GET", "POST"])
def import_leads():
    """Upload a CSV file; show what importing it would do before anything is written."""
    form = ImportForm()
    if form.validate_on_submit():
        content = form.file.data.read()
        try:
            summary, shown = _dry_run(content.decode("utf-8-sig"), form.source.data)
        except (UnicodeDecodeError, imports.ImportFileError) as exc:
            form.file.errors.append(str(exc) if isinstance(exc, imports.ImportFileError)
                                    else "The file is not UTF-8 text; save it as CSV UTF-8 and upload it again.")
        else:
            upload = ImportUpload(id=str(uuid.uuid4()), uploaded_by=current_user.id, source=form.source.data,
                                  content_sealed=b"")
            upload.content_sealed = imports.seal_upload(upload.id, content)
            db.session.add(upload)
            audit.record("import_previewed", actor=current_user, object_type="lead",
                         details={"source": form.source.data, "rows": summary.rows})
            db.session.commit()
            return render_template("admin/import_preview.html", upload=upload, summary=summary, confirm=ConfirmForm(),
                                   rows=shown)
    return render_template("admin/import.html", form=form)


def _dry_run(text: str, source: str) -> tuple[imports.Summary, list[dict]]:
    """What importing would do, and the preview of the first valid rows."""
    importer, shown = imports.Importer(source, None, dry_run=True), []
    for chunk in imports.in_batches(imports.parsed_rows(text, source), 500):
        importer.batch(chunk)
        shown += [imports.preview(row) for row in chunk if isinstance(row, imports.ParsedRow)]
        del shown[PREVIEW_ROWS:]
    db.session.rollback()
    return importer.summary, shown


@bp.post("/import/<uuid:upload_id>")
def confirm_import(upload_id: uuid.UUID):
    """Import a previewed file for real: one transaction per slice, then the summary."""
    upload = db.session.get(ImportUpload, str(upload_id))
    if upload is None or upload.uploaded_by != current_user.id:
        abort(404)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if (utcnow() - upload.created_at).total_seconds() > UPLOAD_HOURS * 3600:
        flash(_("That upload has expired; upload the file again."), "error")
        return redirect(url_for("admin.import_leads"))
    text, source = imports.unseal_upload(upload.id, upload.content_sealed).decode("utf-8-sig"), upload.source
    db.session.delete(upload)
    importer = imports.Importer(source, current_user)
    for chunk in imports.in_batches(imports.parsed_rows(text, source), 500):
        importer.write(importer.batch(chunk))
        db.session.commit()
    db.session.commit()
    return render_template("admin/import_done.html", summary=importer.summary)
