"""The house rules of docs/design.md, checked: layers, no cycles, small modules, cheap specs, one CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cliplab
from cliplab.cli import build_parser

PACKAGE = Path(cliplab.__file__).parent

# What each top-level part of cliplab may import (besides itself and the standard/third-party libraries).
ALLOWED = {
    "io": set(),
    "utils": set(),
    "toyworld": {"io", "utils"},
    "data": {"io", "utils"},
    "checkpoints": {"io"},
    "tokens": set(),
    "models": {"checkpoints", "tokens", "io", "utils"},
    "scenarios": {"data", "toyworld", "io", "utils"},
    "evaluation": {"scenarios", "models", "data", "toyworld", "checkpoints", "io", "utils"},
    "alignment": {"evaluation"},
    "results": {"evaluation", "io"},
    "methods": set(),  # plug-ins: only methods.base and each other, everything else via the TaskContext
    "engine": {
        "methods",
        "results",
        "evaluation",
        "scenarios",
        "models",
        "tokens",
        "checkpoints",
        "data",
        "io",
        "utils",
    },
    "pretrain": {"engine", "evaluation", "models", "checkpoints", "toyworld", "io", "utils"},
    "plots": {"results"},
    "study": {
        "plots",  # the explorer draws figures for a page that has no notebook code to call plots
        "engine",
        "tokens",
        "methods",
        "results",
        "alignment",
        "evaluation",
        "scenarios",
        "models",
        "checkpoints",
        "data",
        "toyworld",
        "io",
        "utils",
    },
    "cli": {"study", "engine", "evaluation", "results", "models", "pretrain", "io"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("cliplab")}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cliplab"


def test_every_import_points_down_the_layers():
    modules = _modules()
    assert set(ALLOWED) >= {_part(m) for m in modules} - {"cliplab"}, "a new top-level part needs a place in ALLOWED"
    wrong = []
    for module, path in modules.items():
        for target in _imports(path) & set(modules):
            if (
                _part(target) != _part(module)
                and _part(module) != "cliplab"
                and _part(target) not in ALLOWED[_part(module)]
            ):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers of docs/design.md:\n" + "\n".join(sorted(wrong))


def test_a_method_plug_in_imports_only_the_methods_package():
    for path in (PACKAGE / "methods").glob("*.py"):
        outside = {t for t in _imports(path) if not t.startswith("cliplab.methods")}
        assert not outside, f"{path.name} imports {sorted(outside)}; take it from the TaskContext instead"


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {
        m: {t for t in _imports(p) if t in modules and t != m and not m.startswith(t + ".")} for m, p in modules.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, f"split these modules by theme: {long}"


def test_the_command_line_has_every_sub_command():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) == {"pretrain-toy", "eval", "run", "study", "table", "lab", "explore"}


def test_planning_runs_renders_no_image_and_opens_no_dataset(monkeypatch):
    """Specs and run identities come from code and shipped metadata alone."""
    from cliplab.engine.runner import plan_run
    from cliplab.scenarios import scenario_names, scenario_requires, scenario_spec
    from cliplab.toyworld.world import ToyWorld

    def refuse(*args, **kwargs):
        raise AssertionError("planning rendered ToyWorld images")

    monkeypatch.setattr(ToyWorld, "render", refuse)
    monkeypatch.setattr("cliplab.data.registry.get_dataset", refuse)
    for name in scenario_names():
        if scenario_requires(name):  # read from the user's files (tic-captions): no spec without them
            with pytest.raises(ValueError, match=r"is read from your files: pass the option\(s\) \['root'\]"):
                scenario_spec(name)
            continue
        spec = scenario_spec(name)
        # a language is learned from captions and evaluated by retrieval: it has no classes
        assert spec.tasks and (spec.protocol == "language_continual" or all(t.classnames for t in spec.tasks))
        config, identity = plan_run(name, "finetune", seed=3)
        assert identity.scenario == name and config.seed == 3
    cifar = scenario_spec("cifar100-cil-10")
    assert cifar.needs_root and [t.n_classes for t in cifar.tasks] == [10] * 10
    assert scenario_spec("mtil-order1", datasets=["mnist", "dtd"]).task_names == ["dtd", "mnist"]


def test_an_unknown_scenario_option_names_the_known_ones():
    from cliplab.scenarios import get_scenario

    with pytest.raises(ValueError, match=r"has no option\(s\) \['bogus'\]; its options are: probe_seed, probe_size"):
        get_scenario("toy-digits-cil", bogus=1)
