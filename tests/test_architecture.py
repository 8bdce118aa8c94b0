"""The package's structure keeps the rules docs/architecture.md states.

Read from the source with :mod:`ast` (nothing is imported), so a rule broken anywhere in
``paygate/`` fails here, inside functions and ``TYPE_CHECKING`` blocks included:

- no import circle;
- the core never imports an edge (a channel, a head-end implementation, the API, the CLI, the
  demo, reconciliation);
- only :mod:`paygate.payments` (and :mod:`paygate.ledger` itself) posts journal entries;
- no class over 500 lines, no module over 900.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "paygate"

CORE = (
    "paygate.money",
    "paygate.errors",
    "paygate.clock",
    "paygate.backoff",
    "paygate.ledger",
    "paygate.billing",
    "paygate.accounts",
    "paygate.corrections",
    "paygate.payments",
    "paygate.supply",
    "paygate.dunning",
    "paygate.models",
    "paygate.config",
    "paygate.records",
    "paygate.promise",
    "paygate.group_commit",
    "paygate.renames",
    "paygate.store",
    "paygate.refunds.closed",
    "paygate.refunds.closure",
    "paygate.refunds.dispatch",
    "paygate.refunds.door",
    "paygate.refunds.model",
    "paygate.refunds.orders",
    "paygate.refunds.route",
    "paygate.refunds.service",
)
EDGES = (
    "paygate.channels",
    "paygate.api",
    "paygate.cli",
    "paygate.console",
    "paygate.demo",
    "paygate.reconcile",
    "paygate.simulation",
    "paygate.sinks",
    # The refund routes speak the providers' protocols; their [refunds] section
    # (paygate.refunds.routes.settings) is read by the core's configuration.
    "paygate.refunds.routes.alipay",
    "paygate.refunds.routes.bank_transfer",
    "paygate.refunds.routes.common",
    "paygate.refunds.routes.online",
    "paygate.refunds.routes.wechatpay",
)
# The head-end contract is the core's own (supply orders are written in its terms); the
# implementations of it are edges.
HEADEND_CONTRACT = "paygate.headend.base"

POSTING_PATH = {"paygate.payments", "paygate.ledger"}

MAX_CLASS_LINES = 500
MAX_MODULE_LINES = 900


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def _tree(name: str) -> ast.Module:
    path = _modules()[name]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _resolve(module: str, importer: str, level: int, is_package: bool) -> str:
    if level == 0:
        return module
    base = importer.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _imports(name: str) -> Iterator[str]:
    """Every paygate module ``name`` imports, wherever the import statement stands."""
    modules = _modules()
    is_package = _modules()[name].name == "__init__.py"
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("paygate"):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module or "", name, node.level, is_package)
            if not target.startswith("paygate"):
                continue
            for alias in node.names:
                # ``from paygate import ledger`` imports the module paygate.ledger.
                sub = f"{target}.{alias.name}"
                yield sub if sub in modules else target


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(name) if m in modules} for name in modules}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself
    (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _is_core(name: str) -> bool:
    return _within(name, CORE)


def _is_edge(name: str) -> bool:
    if name.startswith("paygate.cli") or name.startswith("paygate.demo"):
        return True  # the CLI and demo modules, wherever they sit
    if name.startswith("paygate.headend.") and name != HEADEND_CONTRACT:
        return True
    return _within(name, EDGES)


def test_no_import_circle() -> None:
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert sorted(_circles(graph)) == [["a", "b", "c"], ["d"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_the_core_never_imports_an_edge() -> None:
    graph = _graph()
    crossing = sorted(
        (name, target)
        for name, targets in graph.items()
        if _is_core(name)
        for target in targets
        if _is_edge(target)
    )
    assert crossing == []


def test_core_and_edges_are_told_apart() -> None:
    assert _is_core("paygate.store.engine") and _is_core("paygate.payments")
    assert not _is_core("paygate.storey")
    assert _is_edge("paygate.channels.pos") and _is_edge("paygate.headend.dlt645")
    assert _is_edge("paygate.cli_reconcile") and _is_edge("paygate.reconcile.engine")
    assert not _is_edge(HEADEND_CONTRACT) and not _is_edge("paygate.payments")
    assert set(CORE) <= set(_modules()), "a core module named here does not exist"


def _reaches_for_post(node: ast.AST) -> bool:
    """``ledger.post`` (called or passed on), or ``from paygate.ledger import post``."""
    if isinstance(node, ast.Attribute):
        target = node.value
        return node.attr == "post" and isinstance(target, ast.Name) and target.id == "ledger"
    if isinstance(node, ast.ImportFrom):
        return node.module == "paygate.ledger" and any(a.name == "post" for a in node.names)
    return False


def _posts(name: str) -> list[int]:
    """Lines where ``name`` reaches for the ledger's post function."""
    return [node.lineno for node in ast.walk(_tree(name)) if _reaches_for_post(node)]


def test_only_payments_posts_to_the_ledger() -> None:
    posting = {name: lines for name in _modules() if (lines := _posts(name))}
    assert set(posting) - POSTING_PATH == set(), posting
    assert "paygate.payments" in posting


def _lines(node: ast.AST) -> int:
    end = getattr(node, "end_lineno", None)
    start = getattr(node, "lineno", None)
    assert end is not None and start is not None
    return int(end) - int(start) + 1


def test_no_class_over_500_lines() -> None:
    long = sorted(
        (name, node.name, _lines(node))
        for name in _modules()
        for node in ast.walk(_tree(name))
        if isinstance(node, ast.ClassDef) and _lines(node) > MAX_CLASS_LINES
    )
    assert long == []


def test_no_module_over_900_lines() -> None:
    long = {
        name: count
        for name, path in _modules().items()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
