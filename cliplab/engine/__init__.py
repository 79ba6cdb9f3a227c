"""The continual-learning engine: scenarios, the one training loop, evaluation and the runner."""

from cliplab.engine.config import TrainConfig, apply_overrides
from cliplab.engine.scenario import Scenario, Task, get_scenario, register_scenario, scenario_names

__all__ = ["Scenario", "Task", "TrainConfig", "apply_overrides", "get_scenario", "register_scenario", "run_scenario", "scenario_names"]


def __getattr__(name):  # lazy: the runner imports models and methods
    if name == "run_scenario":
        from cliplab.engine.runner import run_scenario

        return run_scenario
    raise AttributeError(name)
