"""The core layer holds only what the stack's functions run.

Every module of `usage_meter` must be reached by following imports from some
`functions/*/app.py` (a module only the tests, the CLI or @meter import belongs elsewhere), and
the layer's requirements must not ship the CLI's or @meter's packages: the CEL engine lives in
the metering layer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from usage_meter_local.template import ROOT

CORE = ROOT / "layers" / "core"
PACKAGE = "usage_meter"
CEL_ENGINE = "common-expression-language"
# Packages of a command line (the admin CLI's) or of an expression engine (@meter's).
NOT_IN_CORE = {"rich", "click", "typer", "textual", "prompt-toolkit", CEL_ENGINE, "cel-python"}


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of `package` under `root` (a package is its __init__)."""
    found = {}
    for path in (root / package).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (imports there never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield child
                yield from _runtime_nodes(child)
        else:
            yield node
            yield from _runtime_nodes(node)


def imported(path: Path, name: str | None, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that importing the file runs: each imported module, its parent
    packages, and the submodules named by `from package import submodule`. `name` is the
    file's dotted module name (None outside a package), for relative imports."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                assert name is not None, f"{path}: relative import outside a package"
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            found.update(m for m in (".".join(parts[: i + 1]) for i in range(len(parts))) if m in known)
    return found


def reachable(entry_points: list[Path], root: Path, package: str) -> set[str]:
    """The modules of `package` (under `root`) that importing the entry points runs."""
    known = modules(root, package)
    by_path = {path: name for name, path in known.items()}
    seen: set[str] = set()
    todo = [module for entry in entry_points for module in imported(entry, None, known)]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imported(known[module], by_path[known[module]], known) - seen)
    return seen


def requirement_names(path: Path) -> set[str]:
    """The canonical names of the distributions a requirements file installs."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(Requirement(line).name) for line in lines if line}


def test_every_core_module_is_imported_by_a_function() -> None:
    entry_points = sorted((ROOT / "functions").glob("*/app.py"))
    assert entry_points, "no functions/*/app.py"
    unreached = set(modules(CORE, PACKAGE)) - reachable(entry_points, CORE, PACKAGE)
    assert not unreached, (
        f"core modules no function imports (move them out of the layer): {sorted(unreached)}"
    )


def test_the_import_walk_follows_relative_and_submodule_imports(tmp_path: Path) -> None:
    """The walk is what the test above relies on: relative imports, `from package import
    module`, parent packages; not imports under TYPE_CHECKING."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\nfrom .sub.c import thing\n",
        "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import typing_only\n",
        "pkg/typing_only.py": "",
        "pkg/sub/__init__.py": "from .. import via_parent\n",
        "pkg/sub/c.py": "thing = 1\n",
        "pkg/via_parent.py": "",
        "pkg/unused.py": "import pkg.a\n",
        "app.py": "import json\nimport pkg.a\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert reachable([tmp_path / "app.py"], tmp_path, "pkg") == {
        "pkg",
        "pkg.a",
        "pkg.b",
        "pkg.sub",
        "pkg.sub.c",
        "pkg.via_parent",
    }


def test_core_layer_requirements_hold_no_cli_or_expression_engine() -> None:
    core = requirement_names(CORE / "requirements.txt")
    assert core, "layers/core/requirements.txt lists nothing"
    assert not core & NOT_IN_CORE, f"the core layer ships {sorted(core & NOT_IN_CORE)}"


def test_metering_layer_holds_the_expression_engine() -> None:
    assert CEL_ENGINE in requirement_names(ROOT / "layers" / "metering" / "requirements.txt")
