"""Continual-learning scenarios: what a benchmark is (`ScenarioSpec`) and its data (`Scenario`).

- `base`: the types (`Task`, `ProbeSet`, `RetrievalSet`, `ReferenceData`, `Scenario`, `ScenarioSpec`);
- `toy`: the built-in scenarios on ToyWorld and digits (offline);
- `published`: CIFAR-100 class-incremental and MTIL on local data (ZSCL's protocols);
- `tic`: time-continual image–caption streams (TiC-CLIP): `toy-tic` and dated local caption files;
- `languages`: language-continual learning (CLL-CLIP): `toy-languages`, ToyWorld captions in made-up languages;
- `registry`: the catalogue of names, `scenario_spec` and `get_scenario`.
"""

from cliplab.scenarios.base import (
    OBJECTIVES,
    PROTOCOLS,
    RETRIEVAL_PROTOCOLS,
    ClassSubset,
    LanguageTask,
    ProbeSet,
    ReferenceData,
    RetrievalSet,
    Scenario,
    ScenarioSpec,
    Task,
    TaskSpec,
    TimeStep,
)
from cliplab.scenarios.registry import (
    get_scenario,
    register_scenario,
    scenario_names,
    scenario_requires,
    scenario_spec,
)

__all__ = [
    "OBJECTIVES",
    "PROTOCOLS",
    "RETRIEVAL_PROTOCOLS",
    "ClassSubset",
    "LanguageTask",
    "ProbeSet",
    "ReferenceData",
    "RetrievalSet",
    "Scenario",
    "ScenarioSpec",
    "Task",
    "TaskSpec",
    "TimeStep",
    "get_scenario",
    "register_scenario",
    "scenario_names",
    "scenario_requires",
    "scenario_spec",
]
