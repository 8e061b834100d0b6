"""Static analysis and supply chain (controls 27, 43): bandit at medium severity gates every test run;
pip-audit in CI fails on a known vulnerability and only warns when its advisory service is out of reach."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BANDIT = Path(sys.executable).with_name("bandit")


def load_audit_script():
    spec = importlib.util.spec_from_file_location("audit_deps", ROOT / "bin" / "audit_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


audit_deps = load_audit_script()


def bandit(*targets: str) -> subprocess.CompletedProcess:
    """Run bandit exactly as ``bin/dev test`` does, over ``targets``."""
    line = next(x for x in (ROOT / "bin" / "dev").read_text().splitlines() if '/bin/bandit"' in x)
    arguments = line.split('/bin/bandit"', 1)[1].split()
    arguments = [a for a in arguments if a not in ("crm", "bin/audit_deps.py", "wsgi.py")]
    return subprocess.run([str(BANDIT), *arguments, *targets], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_bin_dev_runs_bandit_at_medium_severity_over_the_code():
    line = next(x for x in (ROOT / "bin" / "dev").read_text().splitlines() if '/bin/bandit"' in x)
    assert "--severity-level medium" in line and " crm " in f"{line} " and "wsgi.py" in line


@pytest.mark.skipif(not BANDIT.exists(), reason="bandit is not installed in this environment")
def test_the_code_has_no_medium_or_high_bandit_finding():
    result = bandit("crm", "bin/audit_deps.py", "wsgi.py")
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(not BANDIT.exists(), reason="bandit is not installed in this environment")
def test_a_medium_finding_fails_the_gate_and_a_justified_one_passes(tmp_path):
    (tmp_path / "risky.py").write_text('import hashlib\n\ndigest = hashlib.md5(b"x").hexdigest()\n'
                                       'query = "SELECT * FROM leads WHERE id = %s" % input()\n')
    failing = bandit(str(tmp_path / "risky.py"))
    assert failing.returncode == 1 and "B608" in failing.stdout
    (tmp_path / "justified.py").write_text(
        'query = "SELECT 1 FROM leads WHERE id = %s" % int(input())  # nosec B608  # an int, never text\n')
    assert bandit(str(tmp_path / "justified.py")).returncode == 0


def test_every_nosec_in_the_code_names_its_check_and_a_reason():
    """A bare ``# nosec`` would silence every check on the line; each names one and says why (after it,
    or in a comment on the line above)."""
    uses = 0
    for path in [*ROOT.joinpath("crm").rglob("*.py"), ROOT / "bin" / "audit_deps.py", ROOT / "wsgi.py"]:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "nosec" not in line:
                continue
            uses += 1
            assert re.search(r"# nosec B\d{3}\b", line), (path.name, line)
            reason_after = re.search(r"# nosec B\d{3}\s+#\s*\w", line)
            reason_above = number > 0 and lines[number - 1].strip().startswith("#")
            assert reason_after or reason_above, (path.name, line)
    assert uses >= 2  # bin/audit_deps.py's two, at least


# --- pip-audit -------------------------------------------------------------------------------------

VULNERABLE = {"dependencies": [
    {"name": "jinja2", "version": "2.10", "vulns": [
        {"id": "PYSEC-2019-217", "fix_versions": ["2.10.1"], "aliases": ["CVE-2019-10906"], "description": "…"}]},
    {"name": "flask", "version": "3.1.1", "vulns": []},
], "fixes": []}
CLEAN = {"dependencies": [{"name": "flask", "version": "3.1.1", "vulns": []},
                          {"name": "pillow", "version": "13.0.0", "vulns": []}], "fixes": []}
UNAUDITED = {"dependencies": [
    {"name": "flask", "skip_reason": "Dependency not found on PyPI and could not be audited: flask (3.1.1)"},
    {"name": "pillow", "version": "13.0.0", "vulns": []}], "fixes": []}


def test_a_known_vulnerability_fails_the_audit():
    status, lines = audit_deps.verdict(VULNERABLE)
    assert status == 1
    assert lines == ["pip-audit: jinja2 2.10 has PYSEC-2019-217 (fixed in 2.10.1)"]


def test_a_clean_audit_passes_and_an_incomplete_one_warns():
    assert audit_deps.verdict(CLEAN) == (0, ["pip-audit: 2 packages audited, no known vulnerabilities"])
    status, [line] = audit_deps.verdict(UNAUDITED)
    assert status == 0 and line.startswith("warning: pip-audit could not audit 1 of 2 packages (e.g. flask")


def test_an_unreachable_advisory_service_only_warns():
    status, [line] = audit_deps.verdict(None, "Traceback …\nrequests.exceptions.ConnectionError: Max retries\n")
    assert status == 0 and line.endswith("requests.exceptions.ConnectionError: Max retries")


@pytest.mark.skipif(shutil.which("pip-audit", path=str(Path(sys.executable).parent)) is None,
                    reason="pip-audit is not installed in this environment")
def test_the_ci_audit_runs_offline_and_warns_instead_of_failing():
    """The real run, with the network cut off by a proxy on a closed loopback port."""
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "NO_PROXY": ""}
    result = subprocess.run([sys.executable, str(ROOT / "bin" / "audit_deps.py")], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0
    assert result.stderr.startswith("warning: pip-audit could not audit")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_ci_runs_the_dependency_audit():
    assert '"$CRM_VENV/bin/python" bin/audit_deps.py' in (ROOT / ".ci" / "run").read_text()
