"""The package's shape, checked from its source with ``ast`` (nothing is imported).

* **No import cycle** between ``ophyd_servomex`` modules. An import under
  ``if TYPE_CHECKING:`` does not count (it never runs); every other one does, including
  imports inside functions (they run at call time, and a cycle through them is still a
  knot a reader has to untie). An import of a package is an edge to its ``__init__``;
  ``from pkg import name`` is an edge to ``pkg`` and, when ``pkg.name`` is a module, to
  that module too.
* **One public class per name**: two classes called ``FrameHub`` in two layers send a
  reader grepping for it to the wrong one half the time. Classes whose name starts with
  ``_`` and classes local to a function are not public.
* **One module per concept name**: ``hub``, ``owner`` and ``session`` each name at most one
  module of the package.

Each check is a small function tested on a synthetic case first, so it is seen to fail.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "ophyd_servomex"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

CONCEPT_NAMES = ("hub", "owner", "session")
"""Module basenames that must each be used by one module at most."""


# --- reading the package -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Module:
    """One module of the package: dotted name, parsed source, and whether it is a package."""

    name: str
    tree: ast.Module
    is_package: bool

    @property
    def package(self) -> str:
        """The package a relative import in this module starts from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def parse_package(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Module]:
    """Every ``.py`` file under ``root`` as a :class:`Module`, by dotted name."""
    modules: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = Module(name, tree, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _run_time_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` except those in an ``if TYPE_CHECKING:`` body."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for branch in node.orelse:
            yield from _run_time_imports(branch)
        return
    for child in ast.iter_child_nodes(node):
        yield from _run_time_imports(child)


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(modules: Mapping[str, Module], package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at run time."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module in modules.values():
        for node in _run_time_imports(module.tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _absolute(module, node)
                targets = [source, *(f"{source}.{alias.name}" for alias in node.names)]
            for target in targets:
                if target in modules and target != module.name:
                    graph[module.name].add(target)
    return graph


# --- the checks --------------------------------------------------------------------------


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module, each given as
    the modules in import order, the first repeated at the end (``[a, b, a]``)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm (the package is small)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: Mapping[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first)."""
    start = min(component)
    paths: dict[str, list[str]] = {start: [start]}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle in component {sorted(component)}")  # pragma: no cover


def public_classes(modules: Mapping[str, Module]) -> dict[str, list[str]]:
    """Public class name -> the modules defining a class of that name (not function-local)."""
    found: dict[str, list[str]] = {}

    def visit(node: ast.AST, module: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
                found.setdefault(child.name, []).append(module)
            visit(child, module)

    for module in modules.values():
        visit(module.tree, module.name)
    return found


def duplicated_classes(modules: Mapping[str, Module]) -> dict[str, list[str]]:
    """The public class names defined more than once, with where."""
    return {name: where for name, where in public_classes(modules).items() if len(where) > 1}


def shared_basenames(names: list[str], concepts: tuple[str, ...]) -> dict[str, list[str]]:
    """Concept basenames used by more than one module, with the modules."""
    counts = Counter(name.rpartition(".")[2] for name in names)
    return {
        base: sorted(n for n in names if n.rpartition(".")[2] == base)
        for base in concepts
        if counts[base] > 1
    }


# --- the checks fail on what they look for -----------------------------------------------


def _modules_from(sources: dict[str, str]) -> dict[str, Module]:
    modules = {}
    for name, source in sources.items():
        is_package = name.endswith(".__init__")
        dotted = name.removesuffix(".__init__")
        modules[dotted] = Module(dotted, ast.parse(source), is_package)
    return modules


def test_cycle_finder_reports_a_cycle_with_its_modules() -> None:
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a", "p.d"}, "p.d": set()}
    assert import_cycles(graph) == [["p.a", "p.b", "p.c", "p.a"]]


def test_cycle_finder_passes_a_graph_without_cycles() -> None:
    graph = {"p.a": {"p.b", "p.c"}, "p.b": {"p.c"}, "p.c": set()}
    assert import_cycles(graph) == []


def test_cycle_finder_reports_each_knot_once() -> None:
    graph = {"p.a": {"p.b"}, "p.b": {"p.a"}, "p.x": {"p.y"}, "p.y": {"p.z"}, "p.z": {"p.x"}}
    assert import_cycles(graph) == [["p.a", "p.b", "p.a"], ["p.x", "p.y", "p.z", "p.x"]]


def test_graph_resolves_relative_and_package_imports_and_skips_type_checking() -> None:
    modules = _modules_from(
        {
            "p.__init__": "from .a import A\n",
            "p.a": (
                "from typing import TYPE_CHECKING\n"
                "from . import b\n"
                "if TYPE_CHECKING:\n"
                "    from .c import C\n"
                "else:\n"
                "    import p.d\n"
            ),
            "p.b": "def f():\n    from .c import C\n",
            "p.c": "import p\n",
            "p.d": "import os\n",
        }
    )
    assert import_graph(modules, "p") == {
        "p": {"p.a"},
        "p.a": {"p", "p.b", "p.d"},  # `from . import b` is p's __init__ and p.b
        "p.b": {"p.c"},  # an import inside a function runs: it counts
        "p.c": {"p"},  # a package is its __init__
        "p.d": set(),
    }
    assert import_cycles(import_graph(modules, "p")) == [["p", "p.a", "p"]]


def test_type_checking_import_makes_no_cycle() -> None:
    modules = _modules_from(
        {
            "p.__init__": "",
            "p.a": "from .b import B\n",
            "p.b": "import typing\nif typing.TYPE_CHECKING:\n    from .a import A\n",
        }
    )
    assert import_cycles(import_graph(modules, "p")) == []


def test_duplicate_public_classes_are_found_private_and_local_ones_not() -> None:
    modules = _modules_from(
        {
            "p.__init__": "",
            "p.x": "class Hub:\n    class Inner: ...\nclass _Own: ...\n",
            "p.y": "class Hub: ...\nclass _Own: ...\ndef f():\n    class Inner: ...\n",
            "p.z": "if True:\n    class Inner: ...\n",
        }
    )
    assert duplicated_classes(modules) == {"Hub": ["p.x", "p.y"], "Inner": ["p.x", "p.z"]}


def test_shared_concept_basenames_are_found() -> None:
    names = ["p.a.hub", "p.b.hub", "p.a.owner", "p.b.owner_task", "p.c.session"]
    assert shared_basenames(names, CONCEPT_NAMES) == {"hub": ["p.a.hub", "p.b.hub"]}


# --- the package -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return parse_package()


def test_the_package_is_parsed(modules: dict[str, Module]) -> None:
    assert {"ophyd_servomex", "ophyd_servomex.devices.analyser", "ophyd_servomex.codec"} <= set(
        modules
    )
    graph = import_graph(modules)
    assert "ophyd_servomex.codec.models" in graph["ophyd_servomex.devices.analyser"]


def test_no_import_cycle(modules: dict[str, Module]) -> None:
    cycles = import_cycles(import_graph(modules))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_two_public_classes_share_a_name(modules: dict[str, Module]) -> None:
    duplicates = duplicated_classes(modules)
    assert not duplicates, "public classes defined twice:\n" + "\n".join(
        f"{name}: {', '.join(where)}" for name, where in sorted(duplicates.items())
    )


def test_one_module_per_concept_name(modules: dict[str, Module]) -> None:
    assert shared_basenames(sorted(modules), CONCEPT_NAMES) == {}
