"""Imports run downward only: physics/config → data → models → training → sampling → evaluation → cli.

A module may import lvd modules of its own layer or below. A function-level import of an lvd module is allowed
(to keep start-up light, e.g. the CLI imports JAX only for the commands that need it) but not to hide a
cycle: if the module-level imports already lead from the imported module back to the importer, the function-
level import is the hidden half of a circle.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# layer of each package/module prefix (longest prefix wins)
LAYERS = {
    "lvd.errors": 0, "lvd.version": 0, "lvd.physics": 0, "lvd.config": 0, "lvd.distributed": 0,
    "lvd.data": 1,
    "lvd.models": 2, "lvd.runs": 2,
    "lvd.training": 3,
    "lvd.sampling": 4,
    "lvd.measurement": 4,  # uses data only; below evaluation, whose report states closure
    "lvd.evaluation": 5, "lvd.speed": 5,
    "lvd.cli": 6, "lvd": 6,  # the package root is the Python API's front door
}
NAMES = ["physics/config", "data", "models", "training", "sampling", "evaluation", "cli"]


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise KeyError(f"{module}: not assigned to a layer in tests/test_layers.py")
    return LAYERS[best]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def lvd_imports(source: str, module: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at module level)`` for every import of an lvd module."""
    tree = ast.parse(source)
    top = set()  # imports that run when the module is imported: not inside a function body

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                top.add(id(child))
            elif not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child)

    visit(tree)
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            package = node.module or ""
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                package = ".".join([*base, node.module] if node.module else base)
            # `from lvd.data import schema` imports the module lvd.data.schema; `from lvd.data.schema import
            # read_events` the module lvd.data.schema (violations() tells the two apart)
            names = [f"{package}.{a.name}" for a in node.names]
        for name in names:
            if name == "lvd" or name.startswith("lvd."):
                out.append((name, node.lineno, id(node) in top))
    return out


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every upward import and every function-level import that hides a cycle, in ``{module: (source,
    is_package)}``."""
    found, graph, deferred = [], {}, []
    for module, (source, is_package) in sources.items():
        graph.setdefault(module, set())
        for target, line, top_level in lvd_imports(source, module, is_package):
            if target not in sources and target.rsplit(".", 1)[0] in sources | {"lvd": None}:
                target = target.rsplit(".", 1)[0]  # `from lvd.x import name` of a function, not a module
            if layer(target) > layer(module):
                found.append(f"{module}:{line} imports {target} from a higher layer "
                             f"({NAMES[layer(module)]} -> {NAMES[layer(target)]})")
            if top_level:
                graph[module].add(target)
            else:
                deferred.append((module, target, line))

    def reaches(a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            m = todo.pop()
            if m == b:
                return True
            if m not in seen:
                seen.add(m)
                todo += [t for t in graph.get(m, ()) if t.startswith("lvd")]
        return False

    for module, target, line in deferred:
        if target != module and reaches(target, module):
            found.append(f"{module}:{line} imports {target} inside a function to hide an import cycle")
    return found


def package_sources() -> dict[str, tuple[str, bool]]:
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in sorted((SRC / "lvd").rglob("*.py"))}


def test_imports_run_downward_only():
    assert violations(package_sources()) == []


def test_every_module_has_a_layer():
    for module in package_sources():
        layer(module)


@pytest.mark.parametrize("module, source, needle", [
    ("lvd.models.fake", "from lvd.training.state import TrainState\n", "higher layer"),
    ("lvd.data.fake", "def f():\n    from lvd.cli.progress import console\n", "higher layer"),
    ("lvd.physics", "import lvd.config\nfrom lvd.data import schema\n", "higher layer"),
])
def test_an_upward_import_is_caught(module, source, needle):
    sources = package_sources()
    original = sources.get(module, ("", False))
    sources[module] = (original[0] + "\n" + source, original[1])
    found = violations(sources)
    assert any(module in v and needle in v for v in found), found


def test_a_function_level_import_hiding_a_cycle_is_caught():
    sources = {"lvd.data.a": ("from lvd.data import b\n", False),
               "lvd.data.b": ("def f():\n    from lvd.data import a\n", False)}
    assert any("hide an import cycle" in v for v in violations(sources))
    sources["lvd.data.a"] = ("import numpy\n", False)
    assert violations(sources) == []
