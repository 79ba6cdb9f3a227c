"""The study's parameters: what each notebook's `parameters` cell defines, and checks on overrides.

`cliplab study --params KEY=VALUE` and `run_study(params=...)` inject values into the notebooks with
papermill; a value of the wrong type (say `METHODS=finetune` for a list) would otherwise fail deep
inside a notebook, minutes later. These functions read each notebook's defaults and refuse a value
that does not fit them before any notebook runs, with an example of one that does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cliplab.engine.config import parse_value, split_assignment


def notebook_parameters(notebook) -> list[str]:
    """Names assigned in the notebook's cell tagged `parameters` (what papermill can override)."""
    return list(notebook_defaults(notebook))


_NO_LITERAL = object()  # a default that is an expression, not a literal: its type is not checked


def notebook_defaults(notebook) -> dict[str, Any]:
    """Each parameter of the `parameters` cell with its default value (`_NO_LITERAL` when not a literal)."""
    import ast

    defaults: dict[str, Any] = {}
    for cell in notebook.cells:
        if "parameters" not in cell.metadata.get("tags", []):
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    value = _NO_LITERAL
                defaults.update({t.id: value for t in node.targets if isinstance(t, ast.Name)})
    return defaults


def check_parameter(name: str, value: Any, default: Any, notebook: str) -> None:
    """A ValueError unless `value` has the type of the parameter's `default` (None: any value).

    int where a float is expected is fine; a list parameter needs a list (or tuple) whose items
    have the type of the default's items, so `METHODS=finetune` is refused rather than iterated
    letter by letter."""
    if default is None or default is _NO_LITERAL or _fits(value, default):
        return
    raise ValueError(
        f"notebook parameter {name}={value!r} ({type(value).__name__}): expected {_expected(default)}, like its "
        f"default {default!r} in {notebook}; e.g. {name}={_example(value, default)}"
    )


def _fits(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        kinds = {type(item) for item in default}
        if not isinstance(value, (list, tuple)):
            return False
        return len(kinds) != 1 or all(_fits(item, default[0]) for item in value)
    return isinstance(value, type(default))


def _expected(default: Any) -> str:
    if isinstance(default, (list, tuple)):
        kinds = {type(item).__name__ for item in default}
        return f"a list of {kinds.pop()}" if len(kinds) == 1 else "a list"
    return {bool: "True or False", int: "an int", float: "a number", str: "a string", dict: "a dict"}.get(
        type(default), type(default).__name__
    )


def _example(value: Any, default: Any) -> str:
    if isinstance(default, (list, tuple)) and _fits([value], default):
        return repr([value]).replace(" ", "")
    return repr(default).replace(" ", "")


def check_parameters(params: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]]) -> None:
    """`check_parameter` for every parameter against each notebook (name -> its defaults) defining it."""
    for notebook, values in defaults.items():
        for name, value in params.items():
            if name in values:
                check_parameter(name, value, values[name], notebook)


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """["SEEDS=[0,1]", "MODEL=ViT-B-16"] -> {"SEEDS": [0, 1], "MODEL": "ViT-B-16"} (CLI value rules)."""
    params = {}
    for item in items:
        key, value = split_assignment(item, "--params", "KEY=VALUE")
        params[key] = parse_value(value)
    return params


__all__ = ["check_parameter", "check_parameters", "notebook_defaults", "notebook_parameters", "parse_params"]
