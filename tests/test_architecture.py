"""Architecture rules that import-linter cannot express (docs/ARCHITECTURE.md).

import-linter (``make lint``, ``make test``) checks the layers, cycles and private *modules*; this
test walks the syntax tree of every module of ``ste_opt`` and refuses private *names* that cross a
module boundary: ``from x import _name`` and ``x._name`` where ``x`` is another ste_opt module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import ste_opt

ROOT = Path(ste_opt.__file__).resolve().parent

#: (importer, name) pairs known to break the rule when the rule was added; the learning_hooks part
#: of issue 11 removes them. An entry that no longer occurs fails the test, so the list cannot go
#: stale: delete the entries as they are fixed (the goal is an empty set).
KNOWN: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _violations(path: Path) -> list[tuple[str, str, int]]:
    return _violations_in(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")


def _violations_in(source: str, importer: str, is_package: bool) -> list[tuple[str, str, int]]:
    tree = ast.parse(source)
    out = []
    modules: dict[str, str] = {}           # local name -> ste_opt module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(importer, is_package, node.level, node.module)
            if not source.startswith("ste_opt"):
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if _private(alias.name) and source != importer:
                    out.append((importer, f"{source}.{alias.name}", node.lineno))
                if (ROOT.parent / Path(*target.split("."))).with_suffix(".py").exists() or \
                        (ROOT.parent / Path(*target.split(".")) / "__init__.py").exists():
                    modules[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ste_opt") and alias.asname:
                    modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules and _private(node.attr) and modules[node.value.id] != importer:
            out.append((importer, f"{modules[node.value.id]}.{node.attr}", node.lineno))
    return out


def _all_violations():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        found += _violations(path)
    return found


def test_no_private_name_crosses_a_module_boundary():
    found = _all_violations()
    new = [v for v in found if (v[0], v[1]) not in KNOWN]
    assert not new, "private names used across modules:\n" + "\n".join(
        f"  {imp} uses {name} (line {line})" for imp, name, line in new)
    stale = KNOWN - {(v[0], v[1]) for v in found}
    assert not stale, f"remove these entries from KNOWN, they no longer occur: {sorted(stale)}"


def test_the_check_catches_both_forms():
    probe = "from .channel import _hidden, rate_bps\nfrom . import payload\nx = payload._secret\n"
    found = _violations_in(probe, "ste_opt.model.probe", is_package=False)
    names = sorted(v[1] for v in found)
    assert names == ["ste_opt.model.channel._hidden", "ste_opt.model.payload._secret"]


def test_every_import_of_an_ste_opt_name_resolves():
    """Imports inside functions run only when called: check statically that each one resolves."""
    import importlib

    missing = []
    for path in sorted(ROOT.rglob("*.py")):
        importer = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(importer, path.name == "__init__.py", node.level, node.module)
            if not source.startswith("ste_opt"):
                continue
            try:
                mod = importlib.import_module(source)
            except ImportError as exc:     # a third-party extra missing here: not this test's job
                if exc.name and exc.name.startswith("ste_opt"):
                    missing.append(f"{importer}:{node.lineno} imports {source} ({exc})")
                continue
            for alias in node.names:
                if alias.name == "*" or hasattr(mod, alias.name):
                    continue
                try:
                    importlib.import_module(f"{source}.{alias.name}")
                except ImportError:
                    missing.append(f"{importer}:{node.lineno} imports {alias.name} from {source}")
    assert not missing, "\n".join(missing)
