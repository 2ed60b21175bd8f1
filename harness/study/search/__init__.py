"""The hyperparameter search: Optuna on validation accuracy only, and --retune's small search
for each arm's own settings.

    run_searches(settings, results_dir, resources, reference)   # the search and its repeats
    run_retuned(plan, settings, results_dir, resources)         # each arm at its own values

Private steps: the space (_space: one table of parameters), the study and its objective
(_study), stacked trials (_stacked), the runner (_run), --retune (_retune), and the summaries
saved beside the study (_summary).
"""

from harness.study.search._retune import RETUNE_SEED, range_text, run_retuned
from harness.study.search._run import run_search, run_searches, with_tuned_arms
from harness.study.search._space import reference_params, suggest_config
from harness.study.search._study import (
    TPE_STARTUP_TRIALS,
    StorageError,
    finished_count,
    open_study,
    optimize,
    pruner_rungs,
    summarize,
)
from harness.study.search._summary import (
    RETUNE_SUMMARY_FILE,
    RetuneSummary,
    SearchSummary,
    check_saved_files,
    load_retune_summaries,
    load_search_summaries,
    summary_file,
)

__all__ = [
    "RETUNE_SEED",
    "RETUNE_SUMMARY_FILE",
    "TPE_STARTUP_TRIALS",
    "RetuneSummary",
    "SearchSummary",
    "StorageError",
    "check_saved_files",
    "finished_count",
    "load_retune_summaries",
    "load_search_summaries",
    "open_study",
    "optimize",
    "pruner_rungs",
    "range_text",
    "reference_params",
    "run_retuned",
    "run_search",
    "run_searches",
    "suggest_config",
    "summarize",
    "summary_file",
    "with_tuned_arms",
]
