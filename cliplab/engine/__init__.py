"""Training: the one loop every method runs in, and the runner that takes a method through a scenario.

- `config`: `TrainConfig`, the flat settings of a run, and `--set key=value` parsing;
- `optim`: AdamW and the warm-up + cosine schedule (shared with ToyCLIP's pretraining);
- `loop`: one task of training (`train_task`), resumable mid-task;
- `student`: the single student forward per step, frozen teacher copies;
- `sampling`: step-addressable batches; `distributed`: torchrun / DDP;
- `runner`: `run_scenario` — evaluate, train each task, checkpoint, write the run folder.
"""

from cliplab.engine.config import TrainConfig, apply_overrides

__all__ = ["TrainConfig", "apply_overrides", "run_scenario"]


def __getattr__(name):  # lazy: the runner imports models, scenarios and methods
    if name == "run_scenario":
        from cliplab.engine.runner import run_scenario

        return run_scenario
    raise AttributeError(name)
