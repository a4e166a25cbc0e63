"""The package's rooms (docs/architecture.md): what each may import, no import cycles, the Hub-facing set apart.

The import graph is read from the source (every `import` statement, also those inside functions), not from a running
interpreter, so a lazy import that would close a cycle is caught too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent
# Import name -> folder on disk (pyproject.toml's package-dir).
PACKAGE_DIRS = {
    "modeling_qface": REPO / "modeling_qface",
    "modeling_qface.configuration": REPO / "configuration",
    "modeling_qface.training": REPO / "training",
}
# Room -> the rooms its modules may import (docs/architecture.md has the same table). "root" is the package's
# `__init__`: what `import modeling_qface` gives.
ALLOWED = {
    "model": set(),
    "configuration": {"model"},
    "root": {"model", "configuration", "hub"},
    "outputs": {"model"},
    "figures": {"model", "outputs"},
    "hub": {"model", "outputs"},
    "cli": set(),
    "analysis": {"root", "model", "configuration", "outputs", "figures", "video", "cli"},
    "video": {"root", "model", "outputs", "figures"},
    "onnx_export": {"model", "hub", "outputs", "cli"},
    "samples": {"root", "model", "analysis", "figures", "cli"},
    "webdemo": {"root", "model", "configuration", "analysis", "outputs", "figures", "samples", "video", "cli"},
    "training": {"root", "model", "configuration", "hub", "outputs", "samples"},
}
# What the Hub-facing modules may import besides each other: they run as remote code where only these are installed.
HUB_FACING_THIRD_PARTY = {"transformers", "torch", "numpy", "PIL", "safetensors", "huggingface_hub", "onnxruntime"}


def find_modules() -> dict[str, Path]:
    """Every module of the distribution by its import name (demo_model's data folder is not a package)."""
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            if not (path.parent / "__init__.py").is_file():
                continue  # the metric scripts (loaded by path) and other non-package folders
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if package == "modeling_qface" and parts[0] in ("training", "configuration"):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


MODULES = find_modules()


def imports_of(name: str, path: Path) -> list[tuple[str, int, int]]:
    """(imported module, line, relative level) for every import statement in the module, resolved to module names
    (`from package import submodule` counts as an import of the submodule)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:
                target = f"{module}.{alias.name}"
                found.append((target if target in MODULES else module, node.lineno, node.level))
    return found


def first_party(module: str) -> str | None:
    """The distribution's module that `module` names (itself, or the package it is an attribute of), else None."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def room_of(module: str) -> str:
    """`modeling_qface.<room>...` for the subpackages; the package's own top-level modules are the room "root"."""
    parts = module.split(".")
    if len(parts) == 1 or MODULES[".".join(parts[:2])].name != "__init__.py":
        return "root"
    return parts[1]


GRAPH = {
    name: sorted({target for imported, _, _ in imports_of(name, path) if (target := first_party(imported))} - {name})
    for name, path in MODULES.items()
}


def test_the_module_graph_has_no_cycle():
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_every_room_imports_only_the_rooms_it_may():
    assert {room_of(name) for name in MODULES} == set(ALLOWED), "a room without a rule (or a rule without a room)"
    wrong = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if room_of(target) != room_of(name) and room_of(target) not in ALLOWED[room_of(name)]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_hub_facing_modules_import_only_each_other_as_flat_siblings():
    hub_facing = {name: path for name, path in MODULES.items() if name.startswith("modeling_qface.model.")}
    assert len(hub_facing) >= 10
    problems = []
    for name, path in hub_facing.items():
        for imported, line, level in imports_of(name, path):
            where = f"{path.relative_to(REPO)}:{line}"
            if first_party(imported):
                # Remote code is a flat folder: only `from .sibling import` resolves there.
                if level != 1 or not imported.startswith("modeling_qface.model.") or imported.count(".") != 2:
                    problems.append(f"{where}: {imported} (not a flat relative import of a sibling)")
            elif imported.split(".")[0] not in HUB_FACING_THIRD_PARTY | set(sys.stdlib_module_names):
                problems.append(f"{where}: {imported} (not available to remote code)")
    assert not problems, "\n".join(problems)


def test_no_module_claims_a_generic_top_level_name():
    generic = {"training", "configuration", "tests", "benchmarks"}
    wrong = [
        f"{name} imports {imported}"
        for name, path in MODULES.items()
        for imported, _, level in imports_of(name, path)
        if level == 0 and imported.split(".")[0] in generic
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", ["training", "configuration"])
def test_the_folders_refuse_their_top_level_name(name, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImportError, match=f"modeling_qface.{name}"):
        __import__(name)


def test_pyproject_lists_every_package_and_maps_the_folders():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert set(setuptools["packages"]) == packages
    assert {name: REPO / folder for name, folder in setuptools["package-dir"].items()} == PACKAGE_DIRS


def test_nothing_generated_is_committed_in_the_demo_model_folder():
    """The default model's folder holds weights, configs and its reports; its code is the installed package's."""
    folder = REPO / "modeling_qface" / "demo_model"
    assert not list(folder.glob("*.py"))
    config = (folder / "config.json").read_text()
    assert "auto_map" not in config and "custom_pipelines" not in config
