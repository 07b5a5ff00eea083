"""The package's layout rules (DESIGN.md, "Data flow"): no import cycles between illusion's modules,
and no module reaches into another's private names. Read from the source with ``ast``, so lazy
imports inside functions count as much as the ones at the top of a file."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "illusion"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "illusion.session"
    target: str  # the imported module, e.g. "illusion.models"
    names: tuple[str, ...]  # what `from target import ...` took; () for `import target`
    line: int


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str, root: Path = PACKAGE) -> bool:
    return (root.parent / Path(*name.split(".")) / "__init__.py").is_file()


def resolve(source: str, node: ast.ImportFrom, root: Path) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``source``)."""
    if not node.level:
        return node.module or ""
    base = source.split(".") if is_package(source, root) else source.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def type_checking_lines(tree: ast.Module) -> set[int]:
    """Lines under ``if TYPE_CHECKING:``: annotations only, never executed."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, root: Path = PACKAGE) -> list[Import]:
    source = module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [Import(source, alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(source, node, root)
            names = tuple(alias.name for alias in node.names)
            submodules = [n for n in names if is_package(target, root) and is_module(f"{target}.{n}", root)]
            found += [Import(source, f"{target}.{n}", (), node.lineno) for n in submodules]
            found.append(Import(source, target, tuple(n for n in names if n not in submodules), node.lineno))
    return [i for i in found if i.target.split(".")[0] == root.name]


def is_module(name: str, root: Path = PACKAGE) -> bool:
    path = root.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def package_imports(root: Path = PACKAGE) -> list[Import]:
    return [i for path in sorted(root.rglob("*.py")) for i in imports_of(path, root)]


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(imports: list[Import]) -> list[str]:
    """``from illusion.x import _y`` anywhere but in x itself (or x's own package ``__init__``)."""
    return [f"{i.source} line {i.line}: {i.target}.{n}" for i in imports
            for n in i.names if private(n) and i.target != i.source]


def cycles(imports: list[Import]) -> list[list[str]]:
    """Every import cycle between modules (a package's ``__init__`` importing its own submodules
    is the package's table of contents, not a cycle)."""
    graph: dict[str, set[str]] = {}
    for i in imports:
        if i.target != i.source and not i.target.startswith(i.source + "."):
            graph.setdefault(i.source, set()).add(i.target)
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycles():
    assert cycles(package_imports()) == []


def test_no_module_imports_another_modules_private_names():
    assert private_imports(package_imports()) == []


# The checks themselves, on a package written here: each rule catches what it exists to catch.

def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


@pytest.mark.parametrize(("files", "expected"), [
    ({"__init__.py": "", "a.py": "from .b import x\n", "b.py": "def f():\n    from . import a\n"},
     [["pkg.a", "pkg.b", "pkg.a"]]),
    ({"__init__.py": "", "a.py": "from .sub.c import x\n", "sub/__init__.py": "from .c import x\n",
      "sub/c.py": "from ..a import y\n"}, [["pkg.a", "pkg.sub.c", "pkg.a"]]),
    ({"__init__.py": "", "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import x\n",
      "b.py": "from .a import y\n"}, []),
    ({"__init__.py": "from .a import f\n", "a.py": "x = 1\n"}, []),
])
def test_cycles_are_found_through_lazy_relative_and_nested_imports(tmp_path, files, expected):
    package = write_package(tmp_path, files)
    assert cycles(package_imports(package)) == expected


def test_private_names_are_found_across_modules_only(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "", "a.py": "from .b import _hidden, shown\nfrom pkg.b import __all__\n",
        "b.py": "_hidden = shown = 1\n__all__ = []\nfrom .b import _hidden\n",
    })
    assert private_imports(package_imports(package)) == ["pkg.a line 1: pkg.b._hidden"]
