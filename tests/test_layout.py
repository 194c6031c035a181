"""The layout is the architecture: packages by role, dependencies pointing one way.

This test walks every import in `ledger/` and `projections/` (module level and inside
functions; `if TYPE_CHECKING:` blocks are not run, so they do not count) and fails on:

- an import from a lower layer into a higher one (e.g. `stores` importing `ops`);
- an import between two packages of the same layer that the table does not allow;
- any import circle between modules;
- a function-level import of the project's own code in library code without a one-line
  reason (a comment above or at its end); the CLI and the web view import lazily to keep
  start-up cheap, which their package docstrings say once;
- a module of more than 500 lines whose docstring does not say why it is long.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 500

# Lowest first. A module may import its own package, and any package of a lower layer.
LAYERS: list[set[str]] = [
    {"ledger", "ledger.errors", "ledger._log"},
    {"ledger.core", "ledger.files"},
    {"ledger.schema"},
    {"ledger.typed", "ledger.backends"},
    {"projections"},
    {"ledger.engine"},
    {"ledger.stores"},
    {"ledger.ops"},
    {"ledger.compat"},
    {"ledger.web"},  # the audit view; the CLI's `serve` command runs it
    {"ledger.cli"},
    {"ledger.__main__"},
]
# Packages whose function-level imports are lazy for start-up time (said in their docstring).
LAZY_BY_DESIGN = ("ledger.cli", "ledger.web", "ledger.__init__")
REASON_MARKERS = ("#",)


def _package_of(module: str) -> str:
    """The layer unit a module belongs to: `ledger.core.events` -> `ledger.core`."""
    units = sorted((u for layer in LAYERS for u in layer), key=len, reverse=True)
    for unit in units:
        if module == unit or (unit != "ledger" and module.startswith(unit + ".")):
            return unit
    raise AssertionError(f"{module}: not in any layer of tests/test_layout.py; add it")


def _rank(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    in_function: bool
    reason: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("ledger", "projections"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an import names (`ledger.files` + `dirs` style included)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path) -> list[Import]:
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[Import] = []
    seen: set[tuple[str, int]] = set()

    def has_reason(lineno: int, end: int) -> bool:
        above = lines[lineno - 2].strip() if lineno >= 2 else ""
        return "#" in lines[end - 1] or above.startswith(REASON_MARKERS)

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit(stmt, in_function)
                continue
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" for a in child.names]
            for target in dict.fromkeys(targets):
                resolved = _resolve(target)
                if resolved is not None and resolved != module and (
                        resolved, child.lineno) not in seen:
                    seen.add((resolved, child.lineno))
                    end = getattr(child, "end_lineno", None) or child.lineno
                    out.append(Import(module, resolved, child.lineno, in_function,
                                      has_reason(child.lineno, end)))
            visit(child, nested)

    visit(tree, False)
    return out


ALL_IMPORTS = [imp for name, path in MODULES.items() for imp in _imports(name, path)]


def test_every_module_belongs_to_a_layer() -> None:
    for name in MODULES:
        _package_of(name)


def test_dependencies_point_down() -> None:
    wrong = []
    for imp in ALL_IMPORTS:
        src, dst = _package_of(imp.source), _package_of(imp.target)
        if src == dst or (dst == "ledger" and imp.target == "ledger"):
            continue
        if _rank(dst) >= _rank(src):
            wrong.append(f"{imp.source}:{imp.line} imports {imp.target} "
                         f"({src} may not depend on {dst})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in ALL_IMPORTS:
        graph[imp.source].add(imp.target)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_function_level_imports_say_why() -> None:
    silent = [f"{imp.source}:{imp.line} imports {imp.target} inside a function"
              for imp in ALL_IMPORTS
              if imp.in_function and not imp.reason
              and not imp.source.startswith(LAZY_BY_DESIGN)]
    assert not silent, ("a function-level import needs a one-line reason (a comment above "
                        "or at its end), or should be a module-level import:\n"
                        + "\n".join(silent))


def test_long_modules_say_why() -> None:
    silent = []
    for path in MODULES.values():
        count = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if count > MAX_LINES and "long because" not in doc.lower():
            silent.append(f"{path.relative_to(ROOT)}: {count} lines")
    assert not silent, ("split these by role, or say in the docstring why the module is "
                        "long ('... is long because ...'):\n" + "\n".join(silent))


def test_the_walker_sees_a_planted_upward_import(tmp_path: Path) -> None:
    """The checks above can fail: a store importing the CLI is caught as upward."""
    fake = tmp_path / "ledger" / "stores" / "planted.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ledger.cli.app import run\n")
    imports = [Import("ledger.stores.planted", "ledger.cli.app", 1, False, False)]
    src, dst = _package_of(imports[0].source), _package_of(imports[0].target)
    assert _rank(dst) > _rank(src)
    # and the parser finds it the same way it finds the real ones
    MODULES["ledger.stores.planted"] = fake
    try:
        found = _imports("ledger.stores.planted", fake)
    finally:
        del MODULES["ledger.stores.planted"]
    assert [(i.source, i.target) for i in found] == [("ledger.stores.planted", "ledger.cli.app")]


def test_every_public_name_resolves() -> None:
    """`ledger.__all__` is loaded lazily: each name must still lead to a real object, and
    the lazy table must say where it lives."""
    import importlib

    ledger = importlib.import_module("ledger")
    broken = []
    for name in ledger.__all__:
        try:
            getattr(ledger, name)
        except AttributeError as err:
            broken.append(f"{name}: {err}")
    assert not broken, "\n".join(broken)


CONCRETE_BACKENDS = frozenset({"SqliteBackend", "PostgresBackend", "MemoryBackend"})


def _concrete_backend_checks(source: str) -> list[int]:
    """Lines of `isinstance(x, <a concrete backend class>)` (alone or in a tuple) in one
    module's text: above the backends, code talks to the protocol (ledger/backends/base)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("isinstance", "issubclass") and len(node.args) == 2):
            kinds = node.args[1]
            names = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
            if any((isinstance(n, ast.Name) and n.id in CONCRETE_BACKENDS)
                   or (isinstance(n, ast.Attribute) and n.attr in CONCRETE_BACKENDS)
                   for n in names):
                found.append(node.lineno)
    return found


def test_no_isinstance_on_concrete_backends_above_the_backends() -> None:
    hits = [f"{path.relative_to(ROOT)}:{line}"
            for module, path in MODULES.items() if not module.startswith("ledger.backends")
            for line in _concrete_backend_checks(path.read_text())]
    assert not hits, ("use the backend protocol (ledger/backends/base.py) instead of "
                      "isinstance on a concrete backend class:\n" + "\n".join(hits))


def test_the_backend_rule_sees_a_planted_isinstance() -> None:
    assert _concrete_backend_checks("if isinstance(b, SqliteBackend): pass\n") == [1]
    assert _concrete_backend_checks("isinstance(b, (int, sqlite.PostgresBackend))\n") == [1]
    assert _concrete_backend_checks("isinstance(b, Backend)\n") == []
