"""The house keeps its shape: every import inside ``crm/`` points down the layers, and no blueprint imports another.

The table is the one in README.md's "Layers" section (design.md §2, with the modules this
code base added). A module may import its own layer and the layers below it; a blueprint
may import no other blueprint, whatever its layer.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CRM = Path(__file__).resolve().parent.parent / "crm"

#: Layer of each top-level module or package of ``crm``, lowest first.
LAYERS: dict[int, set[str]] = {
    0: {"crypto", "cadence", "hours", "clinic", "calling_hours", "eligibility", "payers", "vob", "cards", "ics",
        "passwords", "totp", "proxies", "headers", "settings", "csvexport", "urls", "i18n", "rulewords", "limits",
        "logs", "ledger", "templating"},
    1: {"models"},
    2: {"audit", "statements", "locks", "integrity", "throttle", "metrics", "export", "backup", "database",
        "labels"},
    3: {"forms"},
    4: {"operations"},
    5: {"sessions", "access", "jobs", "restore"},
    6: {"public", "auth", "leads", "reports", "admin", "alerts"},
    7: {"cli", "errors", "__init__"},
}
BLUEPRINTS = LAYERS[6]
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def _unit(path: Path) -> str:
    """The top-level module or package of ``crm`` a file belongs to."""
    parts = path.relative_to(CRM).parts
    return "__init__" if parts == ("__init__.py",) else parts[0].removesuffix(".py")


def _package(path: Path) -> list[str]:
    """The dotted package a file's relative imports start from."""
    return ["crm", *path.relative_to(CRM).parent.parts]


def _imported(path: Path) -> set[str]:
    """Top-level ``crm`` units this file imports (lazy imports inside functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("crm."))
        elif isinstance(node, ast.ImportFrom):
            base = _package(path)[: len(_package(path)) - node.level + 1] if node.level else []
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target[:1] != ["crm"]:
                continue
            if len(target) > 1:
                found.add(target[1])
            else:  # ``from . import audit, crypto`` at the top of the package
                found.update(alias.name for alias in node.names)
    return found


def _sources() -> list[Path]:
    return [path for path in sorted(CRM.rglob("*.py")) if "migrations" not in path.relative_to(CRM).parts]


def test_every_module_has_a_layer():
    units = {_unit(path) for path in _sources()}
    assert units - LAYER_OF.keys() == set(), "add the new module to the table (and README.md's)"
    assert LAYER_OF.keys() - units == set(), "a module in the table no longer exists"


@pytest.mark.parametrize("path", _sources(), ids=lambda path: str(path.relative_to(CRM)))
def test_imports_point_down_and_blueprints_stay_apart(path):
    unit = _unit(path)
    for target in _imported(path) - {unit}:
        assert target in LAYER_OF, f"{unit} imports unknown crm.{target}"
        assert LAYER_OF[target] <= LAYER_OF[unit], (
            f"crm.{unit} (layer {LAYER_OF[unit]}) imports crm.{target} (layer {LAYER_OF[target]})")
        assert not (unit in BLUEPRINTS and target in BLUEPRINTS), f"blueprint {unit} imports blueprint {target}"


def test_the_walk_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    """The checker itself: relative, package-level and in-function imports are all found."""
    fake = tmp_path / "crm"
    (fake / "leads").mkdir(parents=True)
    source = fake / "leads" / "view.py"
    source.write_text("from ..auth import x\nfrom . import present\n"
                      "def f():\n    from .. import admin\n    import crm.reports.views\n")
    monkeypatch.setattr(sys.modules[__name__], "CRM", fake)
    assert _imported(source) == {"auth", "leads", "admin", "reports"}
