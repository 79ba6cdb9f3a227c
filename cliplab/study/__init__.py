"""The study: what the notebooks call, and the papermill runner that executes them.

- `settings`: the SMOKE preset and the overrides shared by every run of a notebook;
- `store`: the run store (`grid`, `ablation`, `run_requests`: train what is missing, reuse the rest);
- `pool`: independent runs side by side, one per CPU core;
- `tables`: mean ± std tables (README's results tables, each notebook's headline numbers);
- `alignment`: a fixed probe embedded after every task, alignment tables;
- `widgets`: optional ipywidgets controls and the SMOKE banner;
- `explorer`: the run explorer (`cliplab explore`): pick a run and a task step, see its figures;
- `lab`: the JupyterLab workspace of `cliplab lab` / `make lab`;
- `peft`: parameters, memory and time against accuracy; DDAS routing; expert usage (notebook 04);
- `protocols`: the open-domain table, anytime-accuracy curves, online summaries (notebook 06);
- `languages`: new languages (notebook 07): parallel captions and their tokens, token embeddings;
- `tic`: the time-continual study's extras (the drifting world's examples, compute, structure drift);
- `session`: `setup`, what every notebook does before its first run (folders, seeds, run store, overrides);
- `notebooks`: `run_study`, the papermill runner behind `cliplab study` and `make study`.

The notebooks use it as ``from cliplab import study``: the names below are the notebook-facing ones.
"""

from cliplab.io import jsonable
from cliplab.study.alignment import (
    alignment_frame,
    alignment_probe,
    embed_run,
    encode_probe,
    final_alignment,
    rotation_angle_table,
)
from cliplab.study.languages import language_examples, token_embedding_frame, token_groups
from cliplab.study.peft import efficiency_frame, expert_usage_frame, routing_frame, task_identity_frame
from cliplab.study.protocols import (
    anytime_frame,
    odcl_frame,
    odcl_means,
    odcl_table,
    online_means,
    online_table,
    requests_for,
    stability_points,
    task_boundaries,
)
from cliplab.study.session import NotebookSetup, setup
from cliplab.study.settings import (
    SMOKE_ALIGNMENT_PROBE,
    SMOKE_METHOD_OPTIONS,
    SMOKE_SETTINGS,
    one_session_settings,
    output_dirs,
    runs_root,
    scenario_options,
    study_settings,
)
from cliplab.study.store import RunRequest, ablation, by_label, grid, load_results, run_batches, run_requests, tidy_runs
from cliplab.study.tables import headline_numbers, mean_std_table, method_table, zero_shot_summary
from cliplab.study.tic import compute_frame, structure_frame, time_probe, vocabulary_changes, world_examples
from cliplab.study.widgets import explore, smoke_banner

__all__ = [
    "SMOKE_ALIGNMENT_PROBE",
    "SMOKE_METHOD_OPTIONS",
    "SMOKE_SETTINGS",
    "NotebookSetup",
    "RunRequest",
    "ablation",
    "alignment_frame",
    "alignment_probe",
    "anytime_frame",
    "by_label",
    "compute_frame",
    "efficiency_frame",
    "embed_run",
    "encode_probe",
    "expert_usage_frame",
    "explore",
    "final_alignment",
    "grid",
    "headline_numbers",
    "jsonable",
    "language_examples",
    "load_results",
    "mean_std_table",
    "method_table",
    "odcl_frame",
    "odcl_means",
    "odcl_table",
    "one_session_settings",
    "online_means",
    "online_table",
    "output_dirs",
    "requests_for",
    "rotation_angle_table",
    "routing_frame",
    "run_batches",
    "run_requests",
    "runs_root",
    "scenario_options",
    "setup",
    "smoke_banner",
    "stability_points",
    "structure_frame",
    "study_settings",
    "task_boundaries",
    "task_identity_frame",
    "tidy_runs",
    "time_probe",
    "token_embedding_frame",
    "token_groups",
    "vocabulary_changes",
    "world_examples",
    "zero_shot_summary",
]
