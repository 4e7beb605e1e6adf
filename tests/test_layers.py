"""Imports run downward only, along an explicit map of which layer may import which (a DAG, not a chain)::

    base (errors, version, physics, config, distributed)
      └ data ─┬─ models ─ runs ─ sampling ─┬─ training ─ speed ─┐
              └─ measurement ──────────────┴─ evaluation ────────┴─ cli (and the package root)

training and evaluation are peers above sampling: training unfolds for its physics monitor, evaluation judges
unfolded files, and neither imports the other. A module may import lvd modules of its own layer or of a layer
it reaches through :data:`BELOW`. A function-level import of an lvd module is allowed (to keep start-up light,
e.g. the CLI imports JAX only for the commands that need it) but not to hide a cycle: if the module-level
imports already lead from the imported module back to the importer, the function-level import is the hidden
half of a circle.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# layer of each package/module prefix (longest prefix wins)
LAYERS = {
    "lvd.errors": "base", "lvd.version": "base", "lvd.physics": "base", "lvd.config": "base",
    "lvd.distributed": "base",
    "lvd.data": "data",
    "lvd.models": "models",
    "lvd.runs": "runs",
    "lvd.sampling": "sampling",
    "lvd.training": "training",
    "lvd.measurement": "measurement",
    "lvd.evaluation": "evaluation",
    "lvd.speed": "speed",
    "lvd.cli": "cli", "lvd": "cli",  # the package root is the Python API's front door
}
# the layers each layer imports directly; what they import in turn is allowed too
BELOW = {
    "base": (),
    "data": ("base",),
    "models": ("data",),
    "runs": ("models",),
    "sampling": ("runs",),
    "training": ("sampling",),  # the physics monitor unfolds with sampling's Unfolder
    "measurement": ("data",),  # what is made from unfolded events: files in, numbers out
    "evaluation": ("sampling", "measurement"),  # a peer of training: neither imports the other
    "speed": ("training",),
    "cli": ("speed", "evaluation"),
}


def allowed(name: str) -> set[str]:
    """The layers ``name`` may import: itself and everything it reaches through :data:`BELOW`."""
    out, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += BELOW[n]
    return out


def layer(module: str) -> str:
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
            if layer(target) not in allowed(layer(module)):
                found.append(f"{module}:{line} imports {target} from a layer it may not use "
                             f"({layer(module)} -> {layer(target)})")
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
        assert layer(module) in BELOW, module


def test_the_map_is_a_dag():
    for name in BELOW:
        assert all(b in BELOW for b in BELOW[name]), name
        assert not any(name in allowed(b) for b in BELOW[name]), f"{name} lies in a cycle"
    assert "training" not in allowed("evaluation") and "evaluation" not in allowed("training")


@pytest.mark.parametrize("module, source, needle", [
    ("lvd.models.fake", "from lvd.training.state import init_state\n", "may not use"),
    ("lvd.data.fake", "def f():\n    from lvd.cli.progress import console\n", "may not use"),
    ("lvd.physics", "import lvd.config\nfrom lvd.data import schema\n", "may not use"),
    # peers and the layers above sampling
    ("lvd.evaluation.fake", "from lvd.training.loop import train\n", "(evaluation -> training)"),
    ("lvd.sampling.fake", "from lvd.training.monitor import physics_monitor\n", "(sampling -> training)"),
    ("lvd.training.fake", "def f():\n    from lvd.evaluation.report import evaluate\n", "(training -> evaluation)"),
    ("lvd.models.fake", "from lvd.sampling.samplers import solver\n", "(models -> sampling)"),
    ("lvd.runs.fake", "from lvd.training.state import init_state\n", "(runs -> training)"),
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
