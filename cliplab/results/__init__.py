"""Results: the run folder's layout, a finished run's record, and many runs as tables.

- `layout`: every file of a run folder named in one place (`RunFolder`), and a run's identity;
- `record`: `RunResult`, the content of `metrics.json` (`save_run`, `load_run`; `run_summary`, the
  summary under the run's protocol);
- `loss_log`: the per-step loss log;
- `frames`: every run under a folder as one tidy table (`load_runs`), mean ± std (`summary_table`);
- `views`: per-run quantities and the frames the figures draw (final accuracy, stability–plasticity, ...).
"""

from cliplab.results.frames import TIDY_COLUMNS, format_summary, load_runs, summary_table
from cliplab.results.layout import LOSS_LOG_FILE, MATRIX_FILE, METRICS_FILE, RunFolder, RunIdentity
from cliplab.results.loss_log import append_loss_log, load_loss_log
from cliplab.results.record import SCHEMA_VERSION, RunResult, load_run, run_summary, save_run

__all__ = [
    "LOSS_LOG_FILE",
    "MATRIX_FILE",
    "METRICS_FILE",
    "SCHEMA_VERSION",
    "TIDY_COLUMNS",
    "RunFolder",
    "RunIdentity",
    "RunResult",
    "append_loss_log",
    "format_summary",
    "load_loss_log",
    "load_run",
    "load_runs",
    "run_summary",
    "save_run",
    "summary_table",
]
