"""The shape of the code, read from its own imports (ast, nothing imported): the rules of ARCHITECTURE.md
that a change could silently break.

- no import cycle between the modules of pii/, connectors/, plugins/ and dags/ (lazy imports count);
- no private name (``_x``) imported from another module;
- the CSV and FTP connectors and their shared file-format module use no private attribute of another
  object (``other._x``; their own ``self._x`` is theirs);
- the CLI (pii/cli/main.py) imported by no other module: the library and the Airflow tasks call the library;
- no connector importing a pii module that itself uses connectors (connectors sit below the engine);
- layers import only downwards (`LAYERS`): core <- connectors, state <- ledger <- reports <- engine <- cli,
  plugins <- dags; the demo world is imported by the CLI alone.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pii", "connectors", "plugins", "dags")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for every import in the file, lazy ones included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            for a in node.names:
                sub = f"{module}.{a.name}"
                found.append((sub, None) if sub in MODULES else (module, a.name))
    return found


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in MODULES.items():
        for module, _ in _imports(name, path):
            if module in MODULES and module != name:
                edges[name].add(module)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_when_the_checker_reads_a_cycle_then_it_reports_it():
    # the checks below can fail: a made-up graph with a cycle is found, one without is not
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []
    assert len(MODULES) > 40 and "pii.cli.main" in MODULES and "connectors.sql" in MODULES


def test_when_modules_import_each_other_then_there_is_no_cycle():
    assert _cycles(_graph()) == []


def test_when_a_module_imports_a_name_from_another_then_it_is_public():
    private = [(name, module, taken) for name, path in MODULES.items() for module, taken in _imports(name, path)
               if module in MODULES and module != name and taken and taken.startswith("_")]
    assert private == []


def _foreign_private(source: str) -> list[tuple[int, str]]:
    """(line, expression) for every private attribute (``_x``, dunders aside) read or set on anything but
    ``self`` or ``cls``: another object's, class's or module's member."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__") \
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def test_when_the_checker_reads_another_objects_private_attribute_then_it_reports_it():
    # as connectors/ftp.py once drove the CSV connector: the check below can fail
    old = "with self._csv._open(rel) as f:\n    self._csv._layouts.clear()\nx = csvscan._helper()\n"
    assert _foreign_private(old) == [(1, "self._csv._open"), (2, "self._csv._layouts"), (3, "csvscan._helper")]
    assert _foreign_private("self._x = cls._y\nname = obj.__class__.__name__\nself.fileformat.open(rel)\n") == []


@pytest.mark.parametrize("module", ["connectors.ftp", "connectors.csvfiles", "connectors.fileformat"])
def test_when_a_file_connector_needs_another_objects_work_then_through_its_public_api(module):
    """The FTP connector reads, searches and rewrites CSV files through connectors.fileformat's public API,
    not the CSV connector's internals (issue 11)."""
    assert _foreign_private(MODULES[module].read_text(encoding="utf-8")) == []


def test_when_the_library_or_airflow_needs_something_then_it_does_not_import_the_cli():
    importers = sorted((name, d) for name, deps in _graph().items() if not name.startswith("pii.cli")
                       for d in deps if d.startswith("pii.cli"))
    assert importers == []


# Which layer may import which (besides itself). pii/ has no flat modules: every module sits in a layer.
LAYERS = {
    "pii.core": set(),                                  # no I/O on stores, no connectors
    "connectors": {"pii.core"},
    "pii.state": {"pii.core"},
    "pii.ledger": {"pii.core", "pii.state"},
    "pii.reports": {"pii.core", "pii.state", "pii.ledger"},
    "pii.engine": {"pii.core", "pii.state", "pii.ledger", "pii.reports", "connectors"},
    "pii.demo": {"pii.core", "connectors"},             # the demo world and its local FTP/Gmail servers
    "pii.cli": {"pii.core", "pii.state", "pii.ledger", "pii.reports", "pii.engine", "pii.demo", "connectors"},
    "plugins": {"pii.core", "pii.state", "pii.ledger", "pii.reports", "pii.engine", "connectors"},
    "dags": {"plugins"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "pii" and len(parts) > 1 else parts[0]


def _layer_breaches(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, d) for m, deps in edges.items() for d in deps
                  if _layer(d) != _layer(m) and _layer(d) not in LAYERS.get(_layer(m), set()))


def test_when_the_layer_checker_reads_a_wrong_import_then_it_reports_it():
    edges = {"pii.core.subject": {"pii.engine.erasure", "pii.core.errors"}, "connectors.sql": {"pii.core.errors"},
             "pii.reports.plan_report": {"pii.engine.flows"}, "plugins.tasks": {"pii.demo.world"}}
    assert _layer_breaches(edges) == [("pii.core.subject", "pii.engine.erasure"),
                                      ("pii.reports.plan_report", "pii.engine.flows"),
                                      ("plugins.tasks", "pii.demo.world")]


def test_when_modules_import_across_layers_then_only_downwards():
    flat = sorted(m for m, path in MODULES.items() if m.count(".") == 1 and m.startswith("pii.")
                  and path.name != "__init__.py")
    assert flat == [], "every pii module belongs to a layer (a sub-package)"
    assert {_layer(m) for m in MODULES} <= set(LAYERS) | {"pii"}
    assert _layer_breaches(_graph()) == []


def test_when_a_connector_imports_pii_then_not_a_module_that_uses_connectors():
    edges = _graph()
    uses_connectors = {m for m in MODULES if m.startswith("pii") and any(d.startswith("connectors") for d in edges[m])}
    assert {"pii.engine.sweep", "pii.engine.erasure", "pii.engine.discover"} <= uses_connectors  # the engine does
    wrong = sorted((m, d) for m in MODULES if m.startswith("connectors") for d in edges[m] if d in uses_connectors)
    assert wrong == []


def test_when_tests_share_helpers_then_through_support_modules_not_other_test_modules():
    here = Path(__file__).resolve().parent
    taken = []
    for path in sorted(here.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            taken += [(path.name, n) for n in names if n.startswith("tests.test_")]
    assert taken == []


def test_when_a_dag_needs_an_approval_or_a_form_then_it_comes_from_plugins():
    """Every approval DAG is built by plugins/flow_dag.py's factory, and every trigger form is in plugins'
    params modules: no DAG file builds an approval task or a form field itself."""
    built_here = []
    for path in sorted((ROOT / "dags").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Name) and node.id in ("ErasureApprovalOperator", "HITLOperator", "Param"):
                built_here.append((path.name, node.id))
    assert built_here == []
    factory = (ROOT / "plugins" / "flow_dag.py").read_text(encoding="utf-8")
    assert "ErasureApprovalOperator(" in factory and "ErasureApprovalOperator.partial(" in factory


def test_when_a_flow_runs_for_a_date_then_the_date_is_passed_not_set_from_outside():
    """The run date goes in as an argument (`ErasureEngine(..., today=)`); no caller sets `x.today`."""
    set_outside = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            set_outside += [(name, node.lineno) for t in targets if isinstance(t, ast.Attribute) and t.attr == "today"
                            and not (isinstance(t.value, ast.Name) and t.value.id == "self")]
    assert set_outside == []


def test_when_the_engine_opens_a_store_then_through_one_place():
    """`pii.engine.stores.connect` is the one place pii/ and plugins/ build a connector (with the config, the
    inventory and the model); nowhere else calls `open_connector`."""
    callers = sorted(name for name, path in MODULES.items() if name.startswith(("pii", "plugins", "dags"))
                     and "open_connector(" in path.read_text(encoding="utf-8"))
    assert callers == ["pii.engine.stores"]
