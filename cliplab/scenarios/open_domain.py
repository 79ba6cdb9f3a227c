"""Open-domain continual learning (CoLeCLIP, Li et al. 2024): `toy-odcl-til`, `toy-odcl-cil`,
`odcl-order1`, `odcl-order2`.

Domains are learned in sequence and *every* domain is evaluated after every task, seen or not
(CoLeCLIP `engine/trainer.py`): a seen domain among its own classes (TIL) or among the union of
every seen domain's classes, de-duplicated by name in first-occurrence order (CIL); an unseen
domain among its own classes in both settings (the CIL union never holds unseen domains' classes).
Both matrices are recorded by every run; `_til` / `_cil` (or the `setting` option of the MTIL
orders) chooses which one is the run's `accuracy_matrix` and summary.

- `toy-odcl-til` / `toy-odcl-cil`: `toy-mtil`'s four domains (digits, novel shapes, textures,
  made-up shape names: 30 classes, no name shared), in order A (as toy-mtil) or B (reversed,
  standing in for ZSCL/CoLeCLIP order II); toy-mtil's training defaults.
- `odcl-order1` / `odcl-order2`: the 11 MTIL datasets in ZSCL's orders I and II, which are
  CoLeCLIP's two orders (its `tools/eval_metric.py` lists no CIFAR-10); MTIL's defaults (ZSCL's
  1,000 iterations per task for every method).
"""

from __future__ import annotations

from collections.abc import Sequence

from cliplab.data import load_metadata
from cliplab.scenarios.base import Scenario, ScenarioSpec, TaskSpec
from cliplab.scenarios.peft_presets import mtil_presets, toy_mtil_presets
from cliplab.scenarios.published import EXTRA_OPTIONS, MTIL_DEFAULTS, MTIL_METHODS, build_mtil
from cliplab.scenarios.toy import (
    DIGIT_NAMES,
    MTIL_DOMAINS,
    PROBE_OPTIONS,
    TOY_DEFAULTS,
    _digit_task,
    _toy_domain_task,
    _with_probes,
)
from cliplab.toyworld.tasks import downstream_classnames

SETTINGS = ("til", "cil")
TOY_ORDERS = {"A": ("digits", *MTIL_DOMAINS), "B": tuple(reversed(("digits", *MTIL_DOMAINS)))}
TOY_ODCL_DEFAULTS = {**TOY_DEFAULTS, "steps_per_task": 120, "lr": 6e-4}  # toy-mtil's


def _protocol(setting: str) -> str:
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS} (which ODCL matrix the run reports), got {setting!r}")
    return f"open_domain_{setting}"


def _toy_classnames(domain: str) -> tuple[str, ...]:
    return tuple(DIGIT_NAMES) if domain == "digits" else tuple(downstream_classnames(domain))


def toy_odcl_spec(setting: str, order: str = "A") -> ScenarioSpec:
    """toy-mtil's domains as an open-domain sequence (order A: digits first; B: reversed)."""
    if order not in TOY_ORDERS:
        raise ValueError(f"order must be one of {sorted(TOY_ORDERS)}, got {order!r}")
    return ScenarioSpec(
        f"toy-odcl-{setting}",
        _protocol(setting),
        [TaskSpec(d, _toy_classnames(d)) for d in TOY_ORDERS[order]],
        defaults=dict(TOY_ODCL_DEFAULTS),
        method_defaults=toy_mtil_presets(),
        description=f"toy-mtil's four domains in order {order}; seen and unseen domains evaluated "
        f"({'name-deduplicated union of seen classes' if setting == 'cil' else 'each among its own classes'})",
        build_options=PROBE_OPTIONS,
    )


def build_toy_odcl(spec: ScenarioSpec, **probe_options) -> Scenario:
    tasks = [_digit_task(t, list(range(10))) if t.name == "digits" else _toy_domain_task(t.name) for t in spec.tasks]
    return _with_probes(spec, tasks, **probe_options)


def odcl_spec(order: Sequence[str], name: str, setting: str = "cil", datasets: Sequence[str] | None = None):
    """CoLeCLIP's protocol on the MTIL datasets in `order` (or the subset `datasets`, in that order)."""
    if datasets is not None and set(datasets) - set(order):
        raise ValueError(f"unknown MTIL dataset(s) {sorted(set(datasets) - set(order))}; known: {list(order)}")
    chosen = [d for d in order if datasets is None or d in datasets]
    return ScenarioSpec(
        name,
        _protocol(setting),
        [TaskSpec(d, tuple(load_metadata(d).classnames)) for d in chosen],
        defaults=dict(MTIL_DEFAULTS),
        method_defaults={**{k: dict(v) for k, v in MTIL_METHODS.items()}, **mtil_presets()},  # MTIL's recipes
        description="CoLeCLIP's open-domain continual learning on the 11 MTIL datasets (TIL and CIL matrices)",
        needs_root=True,
        build_options=EXTRA_OPTIONS,
    )


def build_odcl(spec: ScenarioSpec, root=None, **extras) -> Scenario:
    return build_mtil(spec, root=root, **extras)


__all__ = ["SETTINGS", "TOY_ODCL_DEFAULTS", "TOY_ORDERS", "build_odcl", "build_toy_odcl", "odcl_spec", "toy_odcl_spec"]
