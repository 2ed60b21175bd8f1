"""Markdown for the index page (its answer: harness.report.answer_section; its verdict tables:
harness.report.verdict_tables; the number formats every page shares: harness.report.markdown).

Pages only format what harness.report.analysis and harness.report.claims computed: a number
printed twice is the same number, and a page can be read against runs.csv without knowing how it
was laid out.
"""

from __future__ import annotations

import pandas as pd

from harness.report.analysis import StudyData, used_runs
from harness.report.markdown import (
    join,
    missing,
    number,
    pct,
    table,
)
from harness.report.verdict_tables import verdict_section
from harness.study.plan import is_baseline


def environment_lines(data: StudyData, frame: pd.DataFrame) -> list[str]:
    runs = used_runs(data)
    env = pd.DataFrame(list(runs["environment"]))
    dates = sorted(env["timestamp"].str[:10])
    arms = data.labels_with_runs()
    epochs = sorted({data.plan.arms[label].config.epochs for label in arms})
    diverged = int((runs["status"] != "ok").sum())
    return [
        f"- **Arms**: {len(arms)} ({', '.join(arms)}); **runs**: {len(runs)} "
        f"({diverged} diverged), seeds {_ranges(sorted(set(runs['seed'])))}, epochs "
        f"{', '.join(map(str, epochs))}",
        f"- **Engine**: `{data.conditions.engine}` (device and torch threads per run: "
        f"{_unique(env, 'device')}, {_unique(env, 'threads')} thread(s)); **platform** "
        f"`{data.conditions.platform}`; **data**: {data.conditions.data}",
        f"- **CPU**: {_unique(env, 'cpu')}; flags: {_unique(env, 'cpu_flags')}; torch kernels: "
        f"{_unique(env, 'cpu_capability')}",
        f"- **Math libraries**: {_unique(env, 'math_libraries')}",
        f"- **Versions**: torch {_unique(env, 'torch')}, Python {_unique(env, 'python')}",
        f"- **Dates**: {dates[0]} to {dates[-1]}; **git commits**: {_unique(env, 'git_commit')}",
        *other_platforms(data),
    ]


def other_platforms(data: StudyData) -> list[str]:
    """The machines of stored runs that the analysis leaves apart: runs of the study's configs
    trained under another numeric platform (a study copied from or to another machine), each
    named, never mixed into a comparison."""
    frame = data.frame
    if frame.empty:
        return []
    ours = (frame["engine"] == data.conditions.engine) & (frame["data"] == data.conditions.data)
    others = frame[ours & (frame["platform"] != data.conditions.platform)]
    lines = []
    for platform, runs in others.groupby("platform"):
        env = runs["environment"].iloc[0]
        lines.append(
            f"- **Runs of another machine, kept apart**: {len(runs)} run(s) of platform "
            f"`{platform}` ({env.get('cpu')}, torch kernels {env.get('cpu_capability')}): "
            "another machine's numbers, analysed nowhere here"
        )
    return lines


def procedure(data: StudyData, frame: pd.DataFrame) -> list[str]:
    plan, margin = data.plan, 100 * data.plan.margin
    design = plan.stein_design
    if design is None:
        seeds = "the factorial's seeds, as its cells" if plan.factorial else "the reference's seeds"
        test = (
            f"Every ablation ran on {seeds}. Δ is the mean paired difference "
            "(variant − reference, same seed) with a 95% Student-t interval; p comes from the "
            "paired t-test."
        )
    else:
        test = (
            f"Seeds until decided, Stein's two-stage design (Stein 1945): a pilot of "
            f"{design.pilot_seeds} seeds per ablation measured the spread of the paired "
            "differences, and from that spread alone (never the effect) each ablation's seed "
            f"count was set, at most {design.max_seeds}. Each is judged on all its seeds "
            "by Stein's test: the mean difference over the pilot's sd, with "
            f"{design.pilot_seeds - 1} degrees of freedom, which keeps the stated error "
            "rates although n was chosen from the data. The tuned network, not planned, is "
            "judged by the paired t-test."
        )
    correlations = ", ".join(
        f"{row.variant} {number(row.correlation, 2)}"
        for row in frame.itertuples()
        if not is_baseline(row.variant)
    )
    return [
        test,
        "Verdicts are read off each comparison's family interval, at 1 − 0.05/m for a family of "
        "m (one family each: the planned ablations; the search's tuned arms; the arms at "
        "their own --retune values): one error budget for differences "
        f"and equivalence (±{margin:.2f} pp) together. Other intervals are 95%, per comparison; "
        "ablations.md adds intervals for new seeds and new test sets together (a new test set "
        "is a new sample too) and per-image tests.",
        "Pairing by seed: one seed draws the train/validation split, the initialization, the "
        "data order, the dropout masks and the augmentation shifts, each from its own stream "
        "(harness.core.seeding), so two arms with the same seed share every draw their difference "
        "leaves untouched. Measured correlation of the paired test accuracies (Pearson, over "
        f"seeds; n/a below 3 pairs): {correlations}.",
    ]


def flags(data: StudyData, frame: pd.DataFrame) -> list[str]:
    notes = []
    for row in frame.itertuples():
        cap = data.plan.arms[row.variant].config.epochs
        if row.best_at_cap > row.n / 2:
            notes.append(
                f"`{row.variant}`: best validation epoch was the last ({cap}) in "
                f"{row.best_at_cap} of {row.n} runs: still improving at the epoch cap."
            )
        if row.diverged:
            notes.append(
                f"`{row.variant}`: {row.diverged} run(s) diverged; counted here and in runs.csv, "
                "left out of every statistic."
            )
        if row.n < row.planned_seeds:
            notes.append(f"`{row.variant}`: {row.n} of {row.planned_seeds} planned seeds finished.")
    missing_arms = [label for label in data.labels if label not in set(frame["variant"])]
    if missing_arms:
        notes.append("No finished run yet: " + ", ".join(f"`{m}`" for m in missing_arms) + ".")
    others = data.other_runs()
    if len(others):
        notes.append(
            f"{len(others)} stored run(s) outside the plan's arms, "
            f"{int((others['status'] != 'ok').sum())} of them diverged (listed below)."
        )
    if data.corrupt:
        notes.append(
            f"{data.corrupt} stored record(s) did not parse and were set aside in "
            "runs/corrupt/; they count nowhere else."
        )
    return [f"- {note}" for note in notes] or ["- none"]


def other_runs_rows(data: StudyData) -> list[dict]:
    """Stored runs of no arm (e.g. `harness.train --set …`): shown, never averaged in."""
    return [
        {
            "record": f"`{row['path']}`",
            "label": row["label"] or "—",
            "seed": row["seed"],
            "engine": row["engine"],
            "status": row["status"],
            "divergence": row["divergence"] if row["status"] != "ok" else "—",
            "test accuracy": pct(row.get("test_accuracy")) if row["status"] == "ok" else "—",
        }
        for _, row in data.other_runs().iterrows()
    ]


def reproducibility(engine: str) -> str:
    text = (
        "A record is identified by config, seed and engine (device and thread count): the "
        "same three on the same machine give bit-identical records (tested). Another "
        "machine (other CPU flags or math libraries) sums in another order and gives other "
        "numbers of the same distribution: compare across machines with the intervals, not "
        "digit by digit."
    )
    if engine.startswith("cuda") and engine.endswith("-stacked"):
        text += (
            " Stacked on a GPU, the stack size counts too (each record keeps its "
            "stack_size): a seed trained in a stack of another size may give other numbers "
            "(seen on an H100; most likely the batched products, whose kernels the library "
            "picks by the problem's size, the number of members included)."
        )
    return text


def index_page(
    data: StudyData,
    frame: pd.DataFrame,
    sections: list[tuple[str, str]],
    first: list[str] | None = None,
) -> str:
    """first: the answer (harness.report.answer_section), where the study has a factorial,
    ahead of the one-at-a-time verdicts."""
    others = other_runs_rows(data)
    return join(
        [
            "# MNIST MLP ablation study",
            *(first or []),
            *verdict_section(data, frame),
            "## What was run, on what",
            "Generated by `python -m harness.report` from the records in [data/](data/) alone: "
            "`python -m harness.report --results-dir FOLDER/data --reports-dir FOLDER`, FOLDER "
            "being this page's folder, rebuilds every page, plot and runs.csv byte for byte.",
            "\n".join(environment_lines(data, frame)),
            "## Procedure",
            *procedure(data, frame),
            "## Reproducibility",
            reproducibility(data.conditions.engine),
            "## Flags",
            "\n".join(flags(data, frame)),
            "## Other stored runs",
            table(others),
            "## Sections",
            "\n".join(f"- [{title}]({file})" for title, file in sections),
        ]
    )


def _unique(env: pd.DataFrame, key: str, width: int | None = None) -> str:
    if key not in env:
        return "not recorded"
    values = {"not recorded" if missing(v) else str(v)[:width] for v in env[key]}
    return ", ".join(sorted(values))


def _ranges(numbers: list[int]) -> str:
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}–{numbers[-1]}"
    return ", ".join(map(str, numbers))
