"""The catalogue of scenarios: every name `cliplab run --scenario` accepts, listed explicitly.

Each entry pairs a *spec* function (what the scenario is; cheap) with a *builder* (its data).
`scenario_spec(name)` is what planning code calls; `get_scenario(name, ...)` builds the data.
To add a scenario: write its spec and builder in a module of this package (toy or published, or
a new one), then add one line to `_CATALOGUE` below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from cliplab.data import MTIL_ORDER_1, MTIL_ORDER_2
from cliplab.scenarios import languages, online, open_domain, published, tic, tic_files, toy
from cliplab.scenarios.base import Scenario, ScenarioSpec


@dataclass(frozen=True)
class ScenarioEntry:
    """How to describe (`spec(**spec_options)`) and build (`build(spec, **build_options)`) a scenario."""

    spec: Callable[..., ScenarioSpec]
    build: Callable[..., Scenario]
    spec_options: tuple[str, ...] = ()  # options that change what the scenario is (e.g. a dataset subset)
    requires: tuple[str, ...] = ()  # options without which the scenario cannot even be described (its file)


_CATALOGUE: dict[str, ScenarioEntry] = {
    "toy-digits-ost": ScenarioEntry(toy.toy_digits_ost_spec, toy.build_toy_digits_ost),
    "toy-digits-cil": ScenarioEntry(toy.toy_digits_cil_spec, toy.build_toy_digits_cil),
    "toy-mtil": ScenarioEntry(toy.toy_mtil_spec, toy.build_toy_mtil),
    "toy-tic": ScenarioEntry(tic.toy_tic_spec, tic.build_toy_tic),
    "toy-languages": ScenarioEntry(languages.toy_languages_spec, languages.build_toy_languages, ("n_languages",)),
    **{
        f"cifar100-cil-{100 // inc}": ScenarioEntry(
            partial(published.cifar100_cil_spec, inc), published.build_cifar100_cil
        )
        for inc in (10, 5, 2)
    },
    "mtil-order1": ScenarioEntry(
        partial(published.mtil_spec, MTIL_ORDER_1, "mtil-order1"), published.build_mtil, ("datasets",)
    ),
    "mtil-order2": ScenarioEntry(
        partial(published.mtil_spec, MTIL_ORDER_2, "mtil-order2"), published.build_mtil, ("datasets",)
    ),
    # open-domain continual learning (CoLeCLIP): every domain evaluated, seen and unseen
    "toy-odcl-til": ScenarioEntry(partial(open_domain.toy_odcl_spec, "til"), open_domain.build_toy_odcl, ("order",)),
    "toy-odcl-cil": ScenarioEntry(partial(open_domain.toy_odcl_spec, "cil"), open_domain.build_toy_odcl, ("order",)),
    "odcl-order1": ScenarioEntry(
        partial(open_domain.odcl_spec, MTIL_ORDER_1, "odcl-order1"), open_domain.build_odcl, ("setting", "datasets")
    ),
    "odcl-order2": ScenarioEntry(
        partial(open_domain.odcl_spec, MTIL_ORDER_2, "odcl-order2"), open_domain.build_odcl, ("setting", "datasets")
    ),
    # online continual learning on a Si-Blurry stream (SIT)
    "toy-si-blurry": ScenarioEntry(online.toy_si_blurry_spec, online.build_toy_si_blurry, ("n_tasks",)),
    "cifar100-si-blurry": ScenarioEntry(online.cifar100_si_blurry_spec, online.build_cifar100_si_blurry, ("n_tasks",)),
    "tic-captions": ScenarioEntry(
        tic_files.tic_captions_spec, tic_files.build_tic_captions, tic_files.SOURCE_OPTIONS, requires=("root",)
    ),
}


def register_scenario(
    name: str,
    spec: Callable[..., ScenarioSpec],
    build: Callable[..., Scenario],
    spec_options: tuple[str, ...] = (),
    overwrite: bool = False,
) -> None:
    """Add a scenario of your own: `spec(**spec_options)` describes it, `build(spec, **options)` builds it."""
    if name in _CATALOGUE and not overwrite:
        raise ValueError(f"scenario {name!r} is already registered; pass overwrite=True to replace it")
    _CATALOGUE[name] = ScenarioEntry(spec, build, tuple(spec_options))


def scenario_names() -> list[str]:
    return sorted(_CATALOGUE)


def scenario_requires(name: str) -> tuple[str, ...]:
    """The options scenario `name` cannot be described without (e.g. `root` of a caption file)."""
    return _entry(name).requires


def _entry(name: str) -> ScenarioEntry:
    if name not in _CATALOGUE:
        raise ValueError(f"unknown scenario {name!r}; known scenarios: {', '.join(sorted(_CATALOGUE))}")
    return _CATALOGUE[name]


def _split_options(name: str, entry: ScenarioEntry, spec: ScenarioSpec | None, options: dict[str, Any]):
    spec_opts = {k: v for k, v in options.items() if k in entry.spec_options}
    rest = {k: v for k, v in options.items() if k not in entry.spec_options}
    if spec is not None:
        unknown = sorted(set(rest) - set(spec.build_options))
        if unknown:
            known = sorted(set(spec.build_options) | set(entry.spec_options))
            raise ValueError(
                f"scenario {name!r} has no option(s) {unknown}; its options are: "
                f"{', '.join(known) if known else 'none'}"
            )
    return spec_opts, rest


def scenario_spec(name: str, **options: Any) -> ScenarioSpec:
    """What scenario `name` is (tasks, class names, defaults, presets) without building any data.

    Options that only affect how its data is built (probe sizes, `root`, ...) are accepted and
    ignored here, so the same options serve `scenario_spec` and `get_scenario`."""
    entry = _entry(name)
    missing = [k for k in entry.requires if options.get(k) is None]
    if missing:
        raise ValueError(
            f"scenario {name!r} is read from your files: pass the option(s) {missing} "
            f"(CLI: --scenario-option {missing[0]}=...; notebooks: DATA_ROOT or SCENARIO_OPTIONS)"
        )
    spec_opts, _ = _split_options(name, entry, None, options)
    return entry.spec(**spec_opts)


def get_scenario(name: str, **options: Any) -> Scenario:
    """Build a registered scenario; published ones take `root=` (a folder of local datasets).

    An option the scenario does not know is a ValueError listing the ones it does."""
    entry = _entry(name)
    spec = scenario_spec(name, **options)
    _, build_opts = _split_options(name, entry, spec, options)
    return entry.build(spec, **build_opts)


__all__ = ["ScenarioEntry", "get_scenario", "register_scenario", "scenario_names", "scenario_requires", "scenario_spec"]
