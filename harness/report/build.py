"""Writes a study's reports from stored runs alone (no training): the verdicts, markdown pages,
plots, runs.csv, and a copy of the records they were computed from.

The saved plan (plan.json in the results folder) says which arms and seeds make the study. The
records behind a report are copied into <out>/data/, laid out as a results folder, so that
`python -m harness.report --results-dir reports/data --out reports` rebuilds every page, plot and
runs.csv byte for byte from what is committed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import UserError
from harness.report import detail_pages, index_page, markdown, plots, search_page, verdict_tables
from harness.report.analysis import (
    ABLATIONS,
    SELECTED,
    StudyData,
    architecture,
    curve_bands,
    load_study_data,
    lr_cuts,
    per_digit_table,
    summed_confusion,
    used_runs,
)
from harness.report.answer_section import ANSWER_PLOT, answer_rows, answer_section
from harness.report.budget_analysis import BudgetAnalysis, budget_analysis
from harness.report.budget_page import budget_page
from harness.report.claims import claims_rows
from harness.report.comparisons import comparison_table
from harness.report.factorial_analysis import (
    FactorialAnalysis,
    effects_table,
    factorial_analysis,
)
from harness.report.factorial_page import SHORT, change, factorial_page
from harness.report.folder import DATA, ReportFolder, check_report_folder
from harness.stats import factorial_model as model
from harness.stats.expected_max import expected_max_curve
from harness.study.plan import PLAN_FILE
from harness.study.search import RETUNE_SUMMARY_FILE, summary_file
from harness.study.specs import REFERENCE

CSV_COLUMNS = [
    "variant",
    "label",
    "seed",
    "engine",
    "status",
    "diverged_epoch",
    "divergence",
    "test_accuracy",
    "test_loss",
    "best_val_accuracy",
    "best_epoch",
    "train_val_gap",
    "seconds_per_epoch",
    "parameters",
    "config_hash",
]


def load_checked(results_dir: Path) -> StudyData:
    """The study's data, or one line saying why there is nothing to report."""
    data = load_study_data(results_dir)
    if data.plan is None:
        raise UserError(
            f"{results_dir}: no {PLAN_FILE}, so no study to report; train one first "
            "(python -m harness.ablate, harness.search or run_all.py) or pass --results-dir"
        )
    if REFERENCE not in data.labels_with_runs():
        raise UserError(f"{results_dir}: no finished run of the reference yet, nothing to report")
    return data


def finish(
    results_dir: Path, reports_dir: Path, labels: list[str] | None = None, diverged_now: int = 0
) -> int:
    """Every command's last step: the verdicts on stdout (the named arms' only, if given), the
    reports written; 1 when this command saw a run diverge."""
    check_report_folder(reports_dir, results_dir)
    data = load_checked(results_dir)
    frame = comparison_table(data)
    print(verdict_tables.reference_line(frame).replace("**", ""))
    print(markdown.table(verdict_tables.verdict_rows(frame, data.plan.margin, labels)))
    index = write_reports(data, reports_dir, frame)
    print(f"report: {index}")
    if diverged_now:
        print(f"{diverged_now} run(s) diverged: see the flags in {index}", file=sys.stderr)
    return 1 if diverged_now else 0


def write_reports(data: StudyData, out: Path, frame: pd.DataFrame | None = None) -> Path:
    """Writes every page, plot, runs.csv and the data copy under out; returns the index's path.
    frame: comparison_table(data), if already computed."""
    frame = comparison_table(data) if frame is None else frame
    factorial = factorial_analysis(data)
    budgets = budget_analysis(data, factorial)
    finished = list(frame["variant"])
    digits = {label: per_digit_table(data, label) for label in finished}
    confusions = {label: summed_confusion(data, label) for label in finished}
    layers = {label: architecture(data.plan.arms[label].config) for label in data.labels}
    with ReportFolder(out, data.results_dir) as folder:
        draw(data, frame, digits, confusions, layers, folder)
        reference_runs = len(data.ok_runs(REFERENCE))
        sections = []
        if data.plan.factorial is not None:
            _write(folder.path("factorial.md"), factorial_page(factorial, data))
            sections.append(
                ("Factorial: main effects, interactions, simple effects", "factorial.md")
            )
            if factorial is not None:
                draw_factorial(factorial, data.plan.margin, folder)
                effects_table(factorial).to_csv(folder.path("factorial_effects.csv"), index=False)
        if budgets is not None:
            _write(folder.path("budgets.md"), budget_page(budgets, factorial, data.plan.margin))
            draw_budgets(budgets, factorial, data.plan.margin, folder)
            sections.append(("Every training budget: effect curves, time to target", "budgets.md"))
        sections += [
            ("Ablations: every number, training details, curves", "ablations.md"),
            ("Per-digit breakdown", "per_digit.md"),
            ("The write-up's claims, checked", "claims.md"),
        ]
        _write(folder.path("ablations.md"), detail_pages.ablations_page(frame, data.plan.margin))
        runs = {label: len(data.ok_runs(label)) for label in finished}
        _write(folder.path("per_digit.md"), detail_pages.per_digit_page(digits, confusions, runs))
        _write(
            folder.path("claims.md"), detail_pages.claims_page(claims_rows(data), reference_runs)
        )
        if data.search is not None:
            _write(folder.path("search.md"), search_page.search_page(data, frame))
            sections.append(("Hyperparameter search", "search.md"))
        for label in data.labels:
            page = detail_pages.variant_page(data, frame, label, layers[label], digits.get(label))
            _write(folder.path(f"variants/{label}.md"), page)
            sections.append((f"Arm: {label}", f"variants/{label}.md"))
        runs_table(data).to_csv(folder.path("runs.csv"), index=False)
        copy_data(data, folder)
        sections += [
            ("Every run behind these tables (CSV)", "runs.csv"),
            ("The records and plan these pages were computed from", f"{DATA}/"),
        ]
        first = answer_section(factorial, budgets, data.plan.margin)
        _write(folder.path("README.md"), index_page.index_page(data, frame, sections, first))
        folder.finish()
    return Path(out) / "README.md"


def draw(
    data: StudyData,
    frame: pd.DataFrame,
    digits: dict[str, pd.DataFrame],
    confusions: dict[str, Any],
    layers: dict[str, list[dict[str, Any]]],
    folder: ReportFolder,
) -> None:
    def save(figure: Any, kind: str, label: str | None = None) -> None:
        plots.save(figure, folder.path(markdown.plot_file(kind, label)))

    series = [curve_series(data, label) for label in frame["variant"]]
    for arm in series:
        label = arm["label"]
        save(plots.curves_figure([arm], band=True), "curves", label)
        save(plots.per_digit_figure(label, digits[label], arm["n"]), "per_digit", label)
    save(plots.curves_figure(series, band=False), "curves", "all")
    save(
        plots.confusion_figure(confusions[REFERENCE], series[0]["n"], REFERENCE),
        "confusion",
        REFERENCE,
    )
    families = [frame[(frame["family"] == ABLATIONS) & (frame["variant"] != REFERENCE)]]
    families.append(frame[frame["family"] == SELECTED])
    save(plots.forest_figure(pd.concat(families), data.plan.margin), "forest")
    for label, arm_layers in layers.items():
        save(plots.architecture_figure(label, arm_layers), "architecture", label)
    if data.search is not None:
        save(plots.search_history_figure(data.search.trials), "search_history")
        curves = {
            label: expected_max_curve(np.array(search.trial_values()))
            for label, search in data.searches.items()
        }
        save(plots.expected_best_figure(curves), "search_expected_best")


def draw_factorial(analysis: FactorialAnalysis, margin: float, folder: ReportFolder) -> None:
    levels = {f.name: f.levels for f in analysis.factorial.factors}
    df = analysis.effects.loc[analysis.effects["kind"] == model.KINDS[0], "df_seeds"].iloc[0]
    residual_sd = float(np.sqrt((analysis.runs["residual"] ** 2).sum() / df))
    figure = plots.interaction_figure(analysis.runs, analysis.factors, levels, residual_sd)
    plots.save(figure, folder.path(markdown.plot_file("factorial_interactions")))
    figure = plots.residuals_figure(analysis.runs, analysis.factors[0])
    plots.save(figure, folder.path(markdown.plot_file("factorial_residuals")))
    figure = plots.answer_figure(answer_rows(analysis), margin)
    plots.save(figure, folder.path(markdown.plot_file(ANSWER_PLOT)))


def draw_budgets(
    budgets: BudgetAnalysis,
    factorial: FactorialAnalysis | None,
    margin: float,
    folder: ReportFolder,
) -> None:
    """The effect curves (the factorial's main and simple effects per factor, else each arm's
    effect) on one shared scale, and accuracy against training time."""
    curves: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    if factorial is not None and factorial.by_budget is not None:
        table = factorial.by_budget
        for factor in factorial.factors:
            curves[change(factorial.factorial, factor)] = [
                (SHORT[kind], table[(table["kind"] == kind) & (table["effect"] == factor)])
                for kind in (model.KINDS[0], model.KINDS[2])
            ]
    else:
        for arm, frame in budgets.arms.groupby("arm", sort=False):
            bounds = pd.DataFrame(frame["population_family_ci"].tolist(), columns=["low", "high"])
            curves[arm] = [(arm, frame.reset_index(drop=True).join(bounds))]
    if curves:
        figure = plots.budget_curves_figure(curves, margin, budgets.budgets)
        plots.save(figure, folder.path(markdown.plot_file("budget_curves")))
    plots.save(plots.clock_figure(budgets.clock), folder.path(markdown.plot_file("budget_clock")))


def curve_series(data: StudyData, label: str) -> dict[str, Any]:
    ok = data.ok_runs(label)
    return {
        "label": label,
        "n": len(ok),
        "val": curve_bands(ok, "val_accuracy"),
        "loss": curve_bands(ok, "train_loss"),
        "cuts": [lr_cuts(history) for history in ok["history"]],
    }


def runs_table(data: StudyData) -> pd.DataFrame:
    """One row per run of an arm, so that a reader can recompute every number."""
    runs = used_runs(data)
    digits = pd.DataFrame(
        [a if isinstance(a, list) else [float("nan")] * 10 for a in runs["per_digit_accuracy"]],
        columns=[f"digit_{d}_accuracy" for d in range(10)],
    )
    return pd.concat([runs.reindex(columns=CSV_COLUMNS), digits], axis=1)


def copy_data(data: StudyData, folder: ReportFolder) -> None:
    """Byte copies of the plan, the search summary and every record (set-aside ones too) into
    the folder's data/, laid out as a results folder."""
    source = data.results_dir
    names = [PLAN_FILE, RETUNE_SUMMARY_FILE, *map(summary_file, data.searches)]
    names += [f"runs/{name}" for name in data.frame["path"]]
    names += [f"runs/corrupt/{path.name}" for path in (source / "runs/corrupt").glob("*.json")]
    regenerating = (folder.root / DATA).resolve() == source.resolve()  # from the copy itself
    for name in sorted(name for name in names if (source / name).is_file()):
        if regenerating:
            folder.adopt(f"{DATA}/{name}")
        else:
            shutil.copyfile(source / name, folder.path(f"{DATA}/{name}"))


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
