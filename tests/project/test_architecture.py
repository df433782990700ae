"""The layers hold: no import cycle, a framework-free core, integrations on public names only.

Read from the source (``ast``), so a violation fails here whichever test imports first:

- **no cycle** among the package's modules, counting imports inside functions too (a cycle
  hidden behind a function-level import is still a cycle), not counting ``TYPE_CHECKING``;
- **the core** (everything outside the framework layers below) never imports a framework at
  module level, nor a framework layer; importing every core module loads no framework;
- **integrations** import only public modules and names of ``safeclip_guardrail``;
- **the CLI is a leaf**: no module outside ``cli/`` imports it, even inside a function (the
  library's tools, such as the transformers silencer, live in the library);
- **each private module** lists only its own names in ``__all__`` (no re-exports);
- **the policy** imports only foundations, and no module touches a tracer's ``run_map``;
- **no module** is over 450 lines (the style target is ~400; see ARCHITECTURE.md);
- **each row of ARCHITECTURE.md's layer table**: every module is in exactly one row, and
  imports only from the layers its row names ("(lazily)": inside a function only).
See ARCHITECTURE.md for the diagram and each layer's rule.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "safeclip_guardrail"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
INTEGRATIONS = sorted(p for p in (ROOT / "integrations").glob("*/safeclip_guardrail_*") if p.is_dir())

FRAMEWORKS = frozenset({
    "langchain", "langchain_core", "langgraph", "llama_index", "nemoguardrails", "ray",
    "fastapi", "uvicorn", "starlette", "litellm", "prometheus_client",
})
FRAMEWORK_LAYERS = {
    "safeclip_guardrail.langchain": {"langchain_core", "langchain", "langgraph"},
    "safeclip_guardrail.serve": {"fastapi", "uvicorn", "starlette", "prometheus_client"},
    "safeclip_guardrail.scale._ray": {"ray"},
    "safeclip_guardrail.scale.serve": {"ray", "fastapi", "starlette"},
}
MAX_LINES = 450


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package_dir: Path) -> dict[str, Path]:
    return {module_name(p, package_dir.parent): p for p in package_dir.rglob("*.py")}


def imports(path: Path, name: str) -> Iterator[tuple[str, bool, int]]:
    """(imported module or ``module.name``, at module level?, line) for every import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    type_checking: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking.update(id(n) for child in node.body for n in ast.walk(child))
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}", id(node) in top, node.lineno


def resolve(target: str, known: dict[str, Path]) -> str | None:
    """The package module an import refers to (a module, or the module holding a name)."""
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def layer_of(name: str) -> str | None:
    return next((layer for layer in FRAMEWORK_LAYERS
                 if name == layer or name.startswith(layer + ".")), None)


def test_no_import_cycles() -> None:
    known = modules(PACKAGE)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        for target, _top, _line in imports(path, name):
            dep = resolve(target, known)
            # importing a package's public namespace is not an edge into its modules
            if dep and dep != name and known[dep].name != "__init__.py":
                graph[name].add(dep)
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(sorted(c)) for c in cycles)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_core_imports_no_framework_at_module_level() -> None:
    known = modules(PACKAGE)
    bad: list[str] = []
    for name, path in known.items():
        layer = layer_of(name)
        allowed = FRAMEWORK_LAYERS.get(layer, set()) if layer else set()
        for target, top, line in imports(path, name):
            root = target.split(".")[0]
            if top and root in FRAMEWORKS and root not in allowed:
                bad.append(f"{name}:{line} imports {target}")
            dep = resolve(target, known)
            if top and layer is None and dep and layer_of(dep):
                bad.append(f"{name}:{line} (core) imports the framework layer {dep}")
    assert not bad, "\n".join(bad)


def test_importing_every_core_module_loads_no_framework() -> None:
    core = sorted(n for n in modules(PACKAGE) if layer_of(n) is None and not n.endswith("__main__"))
    code = ("import importlib, sys\n"
            f"for m in {core!r}:\n    importlib.import_module(m)\n"
            f"bad = sorted({{k.split('.')[0] for k in sys.modules}} & set({sorted(FRAMEWORKS)!r}))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def cli_importers(package_dir: Path) -> list[str]:
    """``module:line`` of every import of ``<package>.cli`` from outside ``<package>.cli``."""
    cli = f"{package_dir.name}.cli"
    return [f"{name}:{line} imports {target}"
            for name, path in modules(package_dir).items()
            if name != cli and not name.startswith(cli + ".")
            for target, _top, line in imports(path, name)
            if target == cli or target.startswith(cli + ".")]


def test_no_library_module_imports_the_cli() -> None:
    bad = cli_importers(PACKAGE)
    assert not bad, "the CLI sits on top; move what the library needs out of it:\n" + "\n".join(bad)


def test_integrations_import_only_public_names() -> None:
    bad: list[str] = []
    for package in INTEGRATIONS:
        for name, path in modules(package).items():
            for target, _top, line in imports(path, name):
                if target.split(".")[0] != "safeclip_guardrail":
                    continue
                private = [p for p in target.split(".") if p.startswith("_")]
                if private:
                    bad.append(f"{name}:{line} imports {target}")
    assert not bad, "integrations must use documented public names:\n" + "\n".join(bad)


def borrowed_exports(package_dir: Path) -> list[str]:
    """Names a private module's ``__all__`` lists but does not define (re-exports).

    A private module (``_name``, or any module under a ``_name`` package) is one home: it
    exports what it defines; the package ``__init__`` re-exports once.
    """
    bad: list[str] = []
    for name, path in modules(package_dir).items():
        parts = name.split(".")[1:]
        if path.stem.startswith("__") or not any(
                p.startswith("_") and not p.startswith("__") for p in parts):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own: set[str] = set()
        listed: list[str] = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, ast.AnnAssign) else [])
            for target in targets:
                own.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
                if isinstance(target, ast.Name) and target.id == "__all__" and node.value:
                    try:
                        listed = list(ast.literal_eval(node.value))
                    except ValueError:
                        bad.append(f"{name}: __all__ is not a literal list")
        bad.extend(f"{name}: {n}" for n in listed if n not in own)
    return bad


def test_private_modules_export_only_their_own_names() -> None:
    bad = [b for root in (PACKAGE, *INTEGRATIONS) for b in borrowed_exports(root)]
    assert not bad, ("a private module's __all__ lists a name it imports; export it from "
                     "its home (the package __init__ re-exports once):\n" + "\n".join(bad))


def test_the_policy_needs_only_foundations() -> None:
    """The engine (``check_batch``) applies the policy too, so it must not reach above (the
    foundations are the first row of ARCHITECTURE.md's layer table)."""
    paths, _may = layer_table(ARCHITECTURE.read_text(encoding="utf-8"))["foundations"]
    foundations = {f"safeclip_guardrail.{p}" for p in paths}
    assert "safeclip_guardrail.policy" in foundations
    known = modules(PACKAGE)
    seen, todo = set(), ["safeclip_guardrail.policy"]
    while todo:
        name = todo.pop()
        seen.add(name)
        for target, _top, _line in imports(known[name], name):
            dep = resolve(target, known)
            if dep and dep not in seen and known[dep].name != "__init__.py":
                todo.append(dep)
    assert seen <= foundations, sorted(seen - foundations)


def test_no_module_reaches_into_tracers() -> None:
    """The verdict reaches tracers through the callback API, never their ``run_map``."""
    bad = [str(p.relative_to(ROOT)) for root in (PACKAGE, *INTEGRATIONS) for p in root.rglob("*.py")
           if "run_map" in p.read_text(encoding="utf-8")]
    assert not bad, bad


def test_no_module_is_a_monolith() -> None:
    roots = [PACKAGE, *INTEGRATIONS]
    too_long = [f"{p.relative_to(ROOT)} ({n} lines)" for root in roots for p in root.rglob("*.py")
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not too_long, too_long


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The graph reader sees a function-level cycle and a framework import (not vacuous)."""
    pkg = tmp_path / "demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import langchain_core\n\ndef f():\n    from demo import b\n")
    (pkg / "b.py").write_text("from demo.a import f\n")
    known = modules(pkg)
    graph = {m: {d for t, _, _ in imports(p, m) if (d := resolve(t, known)) and d != m
                 and known[d].name != "__init__.py"} for m, p in known.items()}
    assert strongly_connected(graph) == [{"demo.a", "demo.b"}]
    assert ("langchain_core", True, 1) in set(imports(pkg / "a.py", "demo.a"))
    (pkg / "cli").mkdir()
    (pkg / "cli" / "__init__.py").write_text("from demo.a import f\n")  # the CLI may import down
    (pkg / "c.py").write_text("def g():\n    from demo.cli import main\n")
    assert cli_importers(pkg) == ["demo.c:2 imports demo.cli.main"]
    (pkg / "_home.py").write_text("X = 1\n__all__ = ['X']\n")
    (pkg / "_shim.py").write_text("from demo._home import X\n\n__all__ = ['X', 'Y']\nY = 2\n")
    assert borrowed_exports(pkg) == ["demo._shim: X"]


# ------------------------------------------------------------------ the layer table


def layer_table(text: str) -> dict[str, tuple[list[str], dict[str, bool]]]:
    """ARCHITECTURE.md's layer table: layer -> (paths, {layer it may import: lazily only?})."""
    section = text.split("## The rule of each layer", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")
            and not line.startswith(("| layer", "|---"))]
    table: dict[str, tuple[list[str], dict[str, bool]]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        paths = re.findall(r"`([^`]+)`", cells[1])
        may = {m.group(1): bool(m.group(2))
               for m in re.finditer(r"`([^`]+)`( \(lazily\))?", cells[2])}
        table[cells[0]] = (paths, may)
    return table


def layer_in(table: dict[str, tuple[list[str], dict[str, bool]]],
             module: str) -> list[tuple[str, str]]:
    """The (layer, path) whose most specific path holds ``module`` (exactly one, if the table
    is whole): ``name`` is a root module, ``name/`` a folder, ``a/b`` a module in a folder."""
    rel = module.split(".")[1:] or ["__init__"]
    hits: list[tuple[int, str, str]] = []
    for layer, (paths, _may) in table.items():
        for path in paths:
            parts = path.rstrip("/").split("/")
            if path.endswith("/") and rel[:len(parts)] == parts:
                hits.append((len(parts), layer, path))
            elif rel == parts:
                hits.append((len(parts) + 1, layer, path))  # a module beats its folder
    top = max((h[0] for h in hits), default=0)
    return [(layer, path) for depth, layer, path in hits if depth == top]


def layer_violations(package_dir: Path, text: str) -> list[str]:
    """Every module in one row; imports only from the layers that row names. Within one
    path of a row (one framework's folder, say) modules import each other freely."""
    table = layer_table(text)
    known = modules(package_dir)
    bad: list[str] = []
    home: dict[str, tuple[str, str]] = {}
    for name in known:
        found = layer_in(table, name)
        if len(found) != 1:
            bad.append(f"{name}: in {[f[0] for f in found] or 'no row'} of the layer table")
        else:
            home[name] = found[0]
    for name, (layer, path) in home.items():
        may = table[layer][1]
        for target, top, line in imports(known[name], name):
            dep = resolve(target, known)
            if dep is None or dep == name or dep not in home or home[dep][1] == path:
                continue
            there = home[dep][0]
            if there not in may:
                problem = f"{name}:{line} ({layer}) imports {dep} ({there})"
            elif may[there] and top:
                problem = (f"{name}:{line} ({layer}) imports {dep} ({there}) at module level; "
                           "the table allows it only lazily")
            else:
                continue
            if problem not in bad:
                bad.append(problem)
    return bad


def test_every_row_of_the_layer_table_holds() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = layer_table(text)
    assert {"foundations", "images", "engine", "messages"} <= set(table), sorted(table)
    bad = layer_violations(PACKAGE, text)
    assert not bad, "ARCHITECTURE.md's layer table and the imports disagree:\n" + "\n".join(bad)


def test_the_layer_table_check_can_fail(tmp_path: Path) -> None:
    pkg = tmp_path / "demo"
    (pkg / "images").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "images" / "__init__.py").write_text("")
    (pkg / "images" / "decode.py").write_text("def f():\n    from demo import guard\n")
    (pkg / "guard.py").write_text("from demo.images import decode\n")
    (pkg / "stray.py").write_text("")
    text = ("## The rule of each layer\n\n| layer | paths | may import |\n|---|---|---|\n"
            "| images | `images/` | `images` |\n"
            "| engine | `guard` | `images` `engine` |\n"
            "| facade | `__init__` | `engine` (lazily) |\n")
    assert layer_violations(pkg, text) == [
        "demo.stray: in no row of the layer table",
        "demo.images.decode:2 (images) imports demo.guard (engine)",
    ]
    (pkg / "__init__.py").write_text("from demo import guard\n")
    assert "demo:1 (facade) imports demo.guard (engine) at module level; the table allows " \
        "it only lazily" in layer_violations(pkg, text)
