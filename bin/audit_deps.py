#!/usr/bin/env python3
"""Audit the installed dependencies for known vulnerabilities with pip-audit, tolerating no network.

    python bin/audit_deps.py        (run with the virtualenv's Python: it audits that environment)

Exit 1 when pip-audit names a known vulnerability in an installed package. Exit 0 with a warning
when the advisory service cannot be reached, or reached but could not audit every package (an
offline CI machine, a registry mirror without the JSON API): an outage must not block a release,
a known vulnerability must. Exit 0 when every package was audited and none is vulnerable.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404  # runs pip-audit from this environment with fixed arguments
import sys
import tempfile
from pathlib import Path
from typing import Any

TIMEOUT_SECONDS = 600


def pip_audit(report: Path) -> subprocess.CompletedProcess:
    """Run pip-audit over this interpreter's environment, writing its JSON report to ``report``."""
    command = [sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off",
               "--timeout", "20", "--format", "json", "--output", str(report)]
    # a fixed argument list and no shell: nothing here comes from outside
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)  # noqa: S603 # nosec B603


def verdict(report: dict[str, Any] | None, failure: str = "") -> tuple[int, list[str]]:
    """The exit status and the lines to print for one pip-audit run (``None``: it wrote no report)."""
    if report is None:
        reason = failure.strip().splitlines()[-1] if failure.strip() else "no report was written"
        return 0, [f"warning: pip-audit could not audit the dependencies (advisory service unreachable?): {reason}"]
    packages = report.get("dependencies", [])
    vulnerable = [p for p in packages if p.get("vulns")]
    if vulnerable:
        return 1, [f"pip-audit: {p['name']} {p.get('version', '?')} has {v['id']} "
                   f"(fixed in {', '.join(v.get('fix_versions') or ['no release yet'])})"
                   for p in vulnerable for v in p["vulns"]]
    skipped = [p for p in packages if "skip_reason" in p]
    if skipped:
        return 0, [f"warning: pip-audit could not audit {len(skipped)} of {len(packages)} packages "
                   f"(e.g. {skipped[0]['name']}: {skipped[0]['skip_reason']}); none audited is vulnerable"]
    return 0, [f"pip-audit: {len(packages)} packages audited, no known vulnerabilities"]


def main() -> int:
    """Run the audit and report its verdict."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pip-audit.json"
        try:
            result = pip_audit(path)
        except subprocess.TimeoutExpired:
            status, lines = verdict(None, f"pip-audit did not finish within {TIMEOUT_SECONDS} s")
        else:
            report = json.loads(path.read_text()) if path.exists() and path.stat().st_size else None
            status, lines = verdict(report, result.stderr)
    for line in lines:
        print(line, file=sys.stderr if status or line.startswith("warning") else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
