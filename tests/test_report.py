"""Reports from hand-made run records: verdicts, pages, plots, claims and the committed data copy.

The fake records agree with themselves as real ones do: accuracy, per-digit accuracy, confusion
matrix, predictions and misclassified images all describe the same 10,000 test images.
"""

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness import UserError
from harness.core.config import Config
from harness.core.model import build_model, parameter_count
from harness.core.store import RunConditions, RunStore
from harness.report import (
    analysis,
    build,
    claims,
    comparisons,
    detail_pages,
    index_page,
    markdown,
    plots,
)
from harness.report.folder import MANIFEST, ReportFolderError
from harness.stats import design, inference, population
from harness.study.plan import Arm, Design, Plan, load_plan, save_plan
from harness.study.search import summary_file
from harness.study.specs import REFERENCE, load_spec, spec_names

PER_DIGIT = 1000  # test images per digit: 10,000 in all, as in MNIST
ERROR_WEIGHTS = [3, 1, 4, 5, 4, 5, 3, 5, 6, 8]  # digit 1 easiest, 9 hardest
ENGINE = "cpu1t"
CONDITIONS = RunConditions(ENGINE, "")  # a plan saved before the platform was recorded
SEARCH_SUMMARY_FILE = summary_file("tuned")
TUNED_CONFIG = Config(hidden_widths=(768, 384, 192), dropout=(0.0, 0.4, 0.2), epochs=12, shift=1)
REF = np.round(0.983 + 0.001 * np.random.default_rng(1).standard_normal(30), 4)
NO_BN = REF[:5] - 0.006 + np.array([0, 2, -2, 1, -1]) * 1e-4
NO_DROPOUT = REF + np.array([1, -1] * 15) * 1e-4  # the same within noise, 30 seeds
TUNED_ACC = REF[:5] + np.array([0.008, 0.001, 0.012, -0.001, 0.010])
CUTS = [6, 5, 6, 7, 6]  # the reference's first lr cut, by seed (cycled)


def errors_per_digit(accuracy):
    total = 10 * PER_DIGIT - round(accuracy * 10 * PER_DIGIT)
    errors = [total * w // sum(ERROR_WEIGHTS) for w in ERROR_WEIGHTS]
    for digit in range(total - sum(errors)):
        errors[9 - digit] += 1
    return errors


def wrong_predictions(digit, count, nine_tie):
    """Where a digit's errors go: 9's to 4 first, then 3 and (with nine_tie) 7 equally."""
    if digit != 9:
        return [(digit + 1) % 10] * count
    if nine_tie:
        quarter = count // 4
        return [3] * quarter + [7] * quarter + [4] * (count - 2 * quarter)
    return [3] * (count // 3) + [4] * (count - count // 3)


def history(epochs, accuracy, cut):
    return [
        {
            "epoch": e,
            "train_loss": 0.5 / e,
            "train_accuracy": accuracy + 0.001,
            "val_loss": 0.4 / e,
            "val_accuracy": accuracy - 0.01 / e,
            "lr": 1e-3 if e <= cut else 5e-4,
            "seconds": 1.0,
        }
        for e in range(1, epochs + 1)
    ]


def fake_record(label, config, seed, accuracy, status="ok", best_epoch=10, nine_tie=True):
    parameters = sum(layer["parameters"] for layer in analysis.architecture(config))
    record = {
        "label": label,
        "config_hash": config.hash(),
        "seed": seed,
        "engine": ENGINE,
        "config": config.to_dict(),
        "status": status,
        "diverged_epoch": None if status == "ok" else 2,
        "divergence": None if status == "ok" else "validation accuracy 9.8%, near chance",
        "divergence_rule": "diverged: …",
        "history": history(config.epochs, accuracy, CUTS[seed % len(CUTS)]),
        "parameters": parameters,
        "environment": {
            "python": "3.11.7",
            "torch": "2.14.1",
            "threads": 1,
            "cpu": "test CPU",
            "cpu_flags": "avx avx2 fma",
            "cpu_capability": "AVX2",
            "math_libraries": "oneDNN v3",
            "device": "cpu",
            "git_commit": "abcdef1234567890",
            "timestamp": f"2026-11-{26 + seed % 2}T00:00:00+00:00",
        },
        "seconds_per_epoch": 1.0,
        "total_seconds": 15.0,
    }
    if status != "ok":
        return record
    predictions = [i % 10 for i in range(10 * PER_DIGIT)]
    confusion = np.zeros((10, 10), dtype=int)
    for digit, count in enumerate(errors_per_digit(accuracy)):
        wrong = wrong_predictions(digit, count, nine_tie)
        for j, predicted in enumerate(wrong):
            predictions[digit + 10 * ((37 * seed + j) % PER_DIGIT)] = predicted
            confusion[digit, predicted] += 1
        confusion[digit, digit] = PER_DIGIT - count
    record["per_digit_accuracy"] = [confusion[d, d] / PER_DIGIT for d in range(10)]
    record["confusion_matrix"] = confusion.tolist()
    record["test_predictions"] = "".join(map(str, predictions))
    record["test_misclassified"] = [i for i, p in enumerate(predictions) if p != i % 10]
    record["metrics"] = {
        "test_accuracy": int(np.trace(confusion)) / (10 * PER_DIGIT),
        "test_loss": 0.05,
        "best_val_accuracy": accuracy - 0.0005,
        "best_epoch": best_epoch,
        "train_accuracy_at_best": accuracy + 0.001,
        "train_val_gap": 0.0015,
    }
    return record


def search_summary():
    trials = [{"number": n, "state": "complete", "value": 0.98 + n / 1000} for n in range(3)]
    return {
        "study": "mlp",
        "wall_seconds": 600.0,
        "storage": "sqlite:///results/search.db",
        "config": TUNED_CONFIG.to_dict(),
        "best_trial": 2,
        "best_value": 0.982,
        "best_params": {"width": 768},
        "counts": {"complete": 3, "pruned": 0, "fail": 0},
        "importances": None,
        "space": {"width": "CategoricalDistribution(choices=(512, 768, 1024))"},
        "trials": trials,
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("study") / "results"
    store = RunStore(root)
    config = {name: load_spec(name).config for name in ("no_batchnorm", "no_dropout", "width_half")}
    arms = {
        REFERENCE: Arm(REFERENCE, "the reference", Config(), ()),
        "no_batchnorm": Arm("no_batchnorm", "no BN", config["no_batchnorm"], tuple(range(5))),
        "no_dropout": Arm("no_dropout", "no dropout", config["no_dropout"], tuple(range(30))),
        "width_half": Arm("width_half", "half", config["width_half"], tuple(range(5))),
        "tuned": Arm("tuned", "best of the search", TUNED_CONFIG, tuple(range(5))),
    }
    save_plan(Plan(arms, CONDITIONS).with_reference_seeds(), root)
    (root / SEARCH_SUMMARY_FILE).write_text(json.dumps(search_summary()))
    for seed, accuracy in enumerate(REF):
        store.save(fake_record(REFERENCE, Config(), seed, accuracy))
        store.save(fake_record("no_dropout", config["no_dropout"], seed, NO_DROPOUT[seed]))
    for seed in range(5):
        cap = config["no_batchnorm"].epochs  # still improving at the cap: flagged
        store.save(
            fake_record("no_batchnorm", config["no_batchnorm"], seed, NO_BN[seed], "ok", cap)
        )
        store.save(fake_record("tuned", TUNED_CONFIG, seed, TUNED_ACC[seed]))
    store.save(fake_record("width_half", config["width_half"], 0, REF[0] - 0.002))
    store.save(fake_record("width_half", config["width_half"], 1, 0.1, "diverged"))
    exploded = Config(lr=10.0)  # `harness.train --set lr=10`: no arm of the plan
    store.save(fake_record("", exploded, 0, 0.1, "diverged"))
    (root / "runs" / "0123456789ab-seed0-cpu1t.json").write_text("{half a record")
    return root


@pytest.fixture(scope="module")
def data(results):
    return build.load_checked(results)


@pytest.fixture(scope="module")
def frame(data):
    return comparisons.comparison_table(data).set_index("variant", drop=False)


@pytest.fixture(scope="module")
def out(data, frame, tmp_path_factory):
    target = tmp_path_factory.mktemp("reports")
    build.write_reports(data, target, frame.reset_index(drop=True))
    return target


def table_row(text, first_cell):
    return next(line for line in text.splitlines() if line.startswith(f"| {first_cell} "))


def cells(row):
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def test_verdicts(frame):
    assert frame.loc["no_batchnorm", "verdict"] == "worse"
    assert frame.loc["no_dropout", "verdict"] == "equivalent"
    assert frame.loc["width_half", "verdict"] == "inconclusive"  # one pair: no test
    expected = np.mean(NO_BN) - np.mean(REF[:5])
    assert frame.loc["no_batchnorm", "diff"] == pytest.approx(expected, abs=1e-9)


def test_index_opens_with_the_verdict_table(out, frame, data):
    text = (out / "README.md").read_text()
    assert text.index("## One-at-a-time verdicts") < text.index("## What was run, on what")
    row = table_row(text, "no_batchnorm")
    # the interval beside the verdict is the family's: 1 - 0.05/3 for 3 ablations with runs
    d = np.array(NO_BN) - np.array(REF[:5])
    low, high = sps.t.interval(1 - 0.05 / 3, len(d) - 1, d.mean(), sps.sem(d))
    assert frame.loc["no_batchnorm", "family_ci"] == pytest.approx((low, high))
    assert cells(row)[5] == f"[{100 * low:+.2f}, {100 * high:+.2f}] worse"  # this test set
    # the verdict's own interval: new seeds and new test sets, at the same family level
    wider = population.seeds_and_images_interval(
        population.paired_differences(
            *(analysis.correct_matrix(runs) for runs in analysis.paired_runs(data, "no_batchnorm"))
        ),
        confidence=1 - 0.05 / 3,
    )
    assert frame.loc["no_batchnorm", "verdict_ci"] == pytest.approx(tuple(wider[1:]))
    assert wider.low <= low and wider.high >= high  # never narrower than this test set's
    assert cells(row)[3] == markdown.interval(wider[1:], markdown.points)
    assert cells(row)[1] == "5" and cells(row)[2] == f"{100 * d.mean():+.2f}"
    assert cells(row)[4] == "**worse**"
    no_dropout = cells(table_row(text, "no_dropout"))
    assert no_dropout[1] == "30" and no_dropout[4] == "equivalent"
    assert markdown.missing(frame.loc["width_half", "seeds_needed"])
    assert cells(table_row(text, "width_half"))[-1] == "n/a"
    assert "seeds for ±0.10 pp" in text and f"Reference: **{100 * np.mean(REF):.2f}%**" in text
    tuned = text.index("### Selected by the search")
    assert tuned < text.index("| tuned ") and "one draw of a noisy procedure" in text
    assert "conditional on that choice" in text
    assert "more than twice the reference's" in text  # the tuned arm's sd flag


def test_index_environment_procedure_and_flags(out):
    text = (out / "README.md").read_text()
    for phrase in [
        "**CPU**: test CPU; flags: avx avx2 fma",
        "**Math libraries**: oneDNN v3",
        "**Engine**: `cpu1t`",
        "2026-11-26 to 2026-11-27",
        "abcdef123456",
        "paired t-test",
        "±0.10 pp",
        "bit-identical",
        "`no_batchnorm`: best validation epoch was the last (15) in 5 of 5 runs",
        "`width_half`: 1 run(s) diverged",
        "`width_half`: 1 of 5 planned seeds finished",
        "1 stored record(s) did not parse",
        "1 stored run(s) outside the plan's arms, 1 of them diverged",
    ]:
        assert phrase in text, phrase
    assert "Stein" not in text  # no two-stage design in this plan
    other = next(line for line in text.splitlines() if "near chance" in line)
    assert "diverged" in other and "`" in other
    correlation = text.split("Measured correlation")[1].split("\n")[0]
    assert f"no_batchnorm {analysis_correlation():.2f}" in correlation


def analysis_correlation():
    return float(np.corrcoef(NO_BN, REF[:5])[0, 1])


def test_stein_design_is_described(data, frame):
    plan = dataclasses.replace(data.plan, design=Design(5, 30))
    designed = dataclasses.replace(data, plan=plan)
    text = "\n".join(index_page.procedure(designed, frame.reset_index(drop=True)))
    assert "Stein 1945" in text and "pilot of 5 seeds" in text and "4 degrees of freedom" in text


def test_ablations_page(out, frame):
    text = (out / "ablations.md").read_text()
    assert "95% CI (BCa)" in text  # two arms have 30 seeds
    assert "n/a" in table_row(text, "[no_batchnorm](variants/no_batchnorm.md)")
    no_dropout = cells(table_row(text, "no_dropout"))
    assert no_dropout[1] == "30" and no_dropout[-1] == "equivalent"
    no_batchnorm = table_row(text, "no_batchnorm")
    assert markdown.pvalue(frame.loc["no_batchnorm", "p_difference"]) in no_batchnorm
    assert (
        markdown.interval(frame.loc["no_batchnorm", "verdict_ci"], markdown.points) in no_batchnorm
    )
    few = frame[frame["n"] < inference.BCA_MIN_N]
    assert "95% CI (BCa)" not in detail_pages.accuracy_rows(few)[0]
    assert "after epoch 5–7 (30 run(s))" in table_row(text, "reference")


def test_forest_shades_the_margin(frame):
    rows = frame[frame["variant"] != REFERENCE]
    figure = plots.forest_figure(rows, 0.001)
    band = [p for p in figure.axes[0].patches if p.get_label() == plots.MARGIN_LABEL]
    assert len(band) == 1
    x0, x1 = band[0].get_x(), band[0].get_x() + band[0].get_width()
    assert (x0, x1) == pytest.approx((-0.1, 0.1))


def test_curves_mark_every_lr_cut(data):
    series = build.curve_series(data, REFERENCE)
    figure = plots.curves_figure([series], band=True)
    marks = [line for line in figure.axes[0].lines if line.get_label() == plots.LR_CUT_LABEL]
    cuts = [CUTS[seed % len(CUTS)] for seed in range(30)]
    assert list(marks[0].get_xdata()) == cuts


def test_claims_use_the_prediction_interval(data):
    rows = {row["claim"]: row for row in claims.claims_rows(data)}
    accuracy = data.ok_runs(REFERENCE)["test_accuracy"]
    mean_ci = inference.mean_ci(accuracy)
    assert not mean_ci.low <= 0.9816 <= mean_ci.high  # the interval of the mean would reject it
    pi = inference.prediction_interval(accuracy)
    row = rows["test accuracy 98.16%"]
    assert row[""] == "✅" and f"[{100 * pi.low:.2f}%, {100 * pi.high:.2f}%]" in row["measured"]
    confused = rows["digit 9 most confused with 3 and 4"]
    assert confused["measured"].startswith("in ") and " of 30 runs" in confused["measured"]
    assert (
        "+256: exactly the last BatchNorm's γ, β (2 × 128)"
        in rows["568,970 parameters"]["measured"]
    )
    cut = rows["a drop in validation accuracy at epoch 6 triggered the plateau scheduler"]
    assert cut[""] == "18 of 30"  # a claim about one run, checked run by run
    assert "first cut after epoch 5 in 6, 6 in 18, 7 in 6" in cut["measured"]
    assert rows["trained on CPU only"][""] == "✅"


def test_parameter_note_names_batchnorm_only_when_it_is():
    data = analysis.StudyData(
        Plan({REFERENCE: Arm(REFERENCE, "", Config(), (0,))}, CONDITIONS),
        pd.DataFrame(),
        {},
        {},
        0,
        None,
    )
    assert "γ" not in claims.parameters_row(data, 569_000)["measured"]
    assert "(+30)" in claims.parameters_row(data, 569_000)["measured"]


def test_stack_size_is_named_only_for_stacked_gpu_runs():
    assert "stack size" in index_page.reproducibility("cuda-stacked")
    for engine in ("cpu1t", "cuda", "cpu-stacked"):  # a CPU stack is bit-exact whatever K
        assert "stack size" not in index_page.reproducibility(engine)


def test_confusion_claim_is_counted_run_by_run():
    def confusion(four, three, seven):
        matrix = np.zeros((10, 10), dtype=int)
        matrix[9, [4, 3, 7]] = [four, three, seven]
        return matrix

    clean, beaten, tied = confusion(20, 15, 14), confusion(20, 15, 16), confusion(20, 15, 15)
    assert claims.confusion_row([clean, clean])[""] == "✅"
    assert claims.confusion_row([beaten])[""] == "❌"
    row = claims.confusion_row([clean, beaten, tied])  # a tie can be broken the claim's way
    assert row[""] == "2 of 3" and "9 → 4: 60, 9 → 3: 45, 9 → 7: 45" in row["measured"]


def test_lr_cut_claim_fails_far_from_epoch_6():
    late = pd.DataFrame({"history": [history(15, 0.98, cut) for cut in (10, 11, 10)]})
    row = claims.lr_cut_row(late)
    assert row[""] == "❌" and "first cut after epoch 10 in 2, 11 in 1" in row["measured"]
    never = pd.DataFrame({"history": [history(15, 0.98, 99)]})
    assert "no learning-rate cut" in claims.lr_cut_row(never)["measured"]


def test_detail_pages(out):
    claims_page = (out / "claims.md").read_text()
    assert "prediction interval" in claims_page and " of 30 |" in claims_page
    digits = (out / "per_digit.md").read_text()
    assert "Easiest digit: **1**" in digits and "hardest: **9**" in digits
    assert "| 9 → 4 " in digits
    search = (out / "search.md").read_text()
    assert "Too few complete trials for importances." in search and "[768, 384, 192]" in search
    variant = (out / "variants" / "width_half.md").read_text()
    assert "epoch 2: validation accuracy 9.8%, near chance" in variant
    assert "| Dropout " in variant and "p = 0.3" in variant
    for name in ["forest", "curves_all", "confusion_reference", "search_history"]:
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000, name
    assert (out / "plots" / "architecture_width_half.png").exists()


def test_runs_csv(out, frame):
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 30 + 5 + 30 + 2 + 5 and set(runs["engine"]) == {ENGINE}
    reference = runs[runs["variant"] == REFERENCE]
    assert reference["test_accuracy"].mean() == pytest.approx(frame.loc[REFERENCE, "mean"])
    assert reference["digit_1_accuracy"].min() > reference["digit_9_accuracy"].max()
    assert runs["status"].eq("diverged").sum() == 1


def test_regenerates_byte_identically_from_the_data_copy(out, results, tmp_path):
    files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert (out / "data" / "plan.json").read_bytes() == (results / "plan.json").read_bytes()
    assert len(list((out / "data" / "runs" / "corrupt").glob("*.json"))) == 1
    assert len(list((out / "data" / "runs").glob("*.json"))) == 73
    assert build.finish(out / "data", tmp_path / "again") == 0
    again = {p.relative_to(tmp_path / "again"): p for p in (tmp_path / "again").rglob("*")}
    assert set(files) == {name for name, path in again.items() if path.is_file()}
    for name, content in files.items():
        assert again[name].read_bytes() == content, name
    build.finish(out / "data", out)  # the copy onto itself
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_finish_prints_the_named_verdicts(results, tmp_path, capsys):
    assert build.finish(results, tmp_path / "r", ["no_batchnorm"], diverged_now=2) == 1
    printed = capsys.readouterr().out
    assert "no_batchnorm" in printed and "worse" in printed and "no_dropout" not in printed
    assert (
        printed.startswith("Reference: ") and f"report: {tmp_path / 'r' / 'README.md'}" in printed
    )


def test_nothing_to_report_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no plan.json"):
        build.finish(tmp_path / "empty", tmp_path / "out")
    command = [sys.executable, "-m", "harness.report", "--out", str(tmp_path / "out")]
    result = subprocess.run(
        [*command, "--results-dir", str(tmp_path / "empty")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "file").write_text("")
    result = subprocess.run(
        [*command, "--results-dir", str(tmp_path / "file")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "not a folder" in result.stderr


def test_no_shared_seed_is_no_comparison(tmp_path):
    store = RunStore(tmp_path)
    variant = load_spec("no_batchnorm").config
    arms = {
        REFERENCE: Arm(REFERENCE, "", Config(), (0,)),
        "no_batchnorm": Arm("no_batchnorm", "", variant, (7,)),
    }
    save_plan(Plan(arms, CONDITIONS).with_reference_seeds(), tmp_path)
    store.save(fake_record(REFERENCE, Config(), 0, 0.98))
    store.save(fake_record("no_batchnorm", variant, 7, 0.97))
    row = comparisons.comparison_table(build.load_checked(tmp_path)).set_index("variant")
    assert row.loc["no_batchnorm", "n_pairs"] == 0 and np.isnan(row.loc["no_batchnorm", "diff"])
    assert row.loc["no_batchnorm", "verdict"] == "inconclusive"


@pytest.mark.parametrize("name", spec_names())
def test_architecture_counts_what_the_model_builds(name):
    config = load_spec(name).config
    layers = analysis.architecture(config)
    assert sum(layer["parameters"] for layer in layers) == parameter_count(build_model(config))
    assert [layer["layer"] for layer in layers].count("Linear") == len(config.hidden_widths) + 1


def test_reference_alone_reports_without_comparisons(tmp_path):
    save_plan(Plan({REFERENCE: Arm(REFERENCE, "", Config(), (0, 1))}, CONDITIONS), tmp_path / "r")
    for seed in (0, 1):
        RunStore(tmp_path / "r").save(fake_record(REFERENCE, Config(), seed, REF[seed]))
    assert build.finish(tmp_path / "r", tmp_path / "out") == 0
    text = (tmp_path / "out" / "README.md").read_text()
    assert (
        "Reference: **" in text and "over 2 seeds" in text and "## One-at-a-time verdicts" in text
    )


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_report_refuses_a_folder_of_other_files_and_touches_nothing(results, tmp_path):
    user = tmp_path / "project"
    user.mkdir()
    (user / "README.md").write_text("my project")
    (user / "notes.txt").write_text("mine")
    before = snapshot(user)
    with pytest.raises(ReportFolderError, match="no report wrote") as error:
        build.finish(results, user)
    assert "\n" not in str(error.value)
    assert snapshot(user) == before
    (tmp_path / "file").write_text("")
    with pytest.raises(ReportFolderError, match="not a folder"):
        build.finish(results, tmp_path / "file")


@pytest.mark.parametrize("where", ["around", "inside", "same"])
def test_report_refuses_an_output_folder_around_or_inside_its_results(results, where):
    before = snapshot(results)
    out = {"around": results.parent, "inside": results / "runs", "same": results}[where]
    with pytest.raises(ReportFolderError, match="one inside the other"):
        build.finish(results, out)
    assert snapshot(results) == before


def test_report_replaces_and_removes_only_what_a_report_wrote(results, tmp_path):
    out = tmp_path / "out"
    build.finish(results, out)
    (out / "notes.md").write_text("a user's notes")
    (out / "gpu").mkdir()
    (out / "gpu" / "README.md").write_text("another report, in a subfolder")
    manifest = json.loads((out / MANIFEST).read_text())
    assert "variants/width_half.md" in manifest["files"] and "data/plan.json" in manifest["files"]
    fewer = dataclasses.replace(
        load_plan(results),
        arms={k: v for k, v in load_plan(results).arms.items() if k != "width_half"},
    )
    smaller = tmp_path / "smaller"
    shutil.copytree(results, smaller)
    save_plan(fewer, smaller)
    build.finish(smaller, out)
    assert not (out / "variants" / "width_half.md").exists()  # its arm left the plan
    assert (out / "notes.md").read_text() == "a user's notes"
    assert (out / "gpu" / "README.md").exists()
    # a file at one of the report's paths that no report wrote (not in the manifest) is refused
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"].remove("claims.md")
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / "claims.md").write_text("my own claims")
    with pytest.raises(ReportFolderError, match="claims.md was not written by a report"):
        build.finish(smaller, out)
    assert (out / "claims.md").read_text() == "my own claims"


def test_a_report_stopped_halfway_leaves_a_folder_the_next_one_takes(
    results, tmp_path, monkeypatch
):
    def interrupted(data):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(build, "claims_rows", interrupted)
        with pytest.raises(KeyboardInterrupt):
            build.finish(results, tmp_path / "out")
    assert (tmp_path / "out" / "ablations.md").exists()  # written before the stop
    assert build.finish(results, tmp_path / "out") == 0
    assert (tmp_path / "out" / "claims.md").exists()
    assert not (tmp_path / "out" / ".report.lock").exists()


def test_a_two_stage_plan_is_judged_by_steins_test(tmp_path):
    """Seeds until decided: the pilot's spread (its 3 pairs, 2 degrees of freedom) sets the
    intervals of all 6 pairs, not the 6 pairs' own spread (which would break the design's
    error rates, see harness.stats.design)."""
    store = RunStore(tmp_path)
    no_bn = dataclasses.replace(Config(), batchnorm=False)
    arms = {
        REFERENCE: Arm(REFERENCE, "the reference", Config(), tuple(range(6))),
        "no_batchnorm": Arm("no_batchnorm", "no BN", no_bn, tuple(range(6))),
    }
    save_plan(Plan(arms, CONDITIONS, design=Design(pilot_seeds=3, max_seeds=6)), tmp_path)
    variant = [0.9851, 0.9838, 0.9849, 0.9822, 0.9861, 0.9830]
    for seed in range(6):
        store.save(fake_record(REFERENCE, Config(), seed, REF[seed]))
        store.save(fake_record("no_batchnorm", no_bn, seed, variant[seed]))
    frame = comparisons.comparison_table(build.load_checked(tmp_path)).set_index("variant")
    d = np.array(variant) - np.array(REF[:6])
    stein = design.stein_test(d, n0=3, margin=0.001)
    family = design.stein_test(d, n0=3, margin=0.001, confidence=1 - 0.05)  # a family of one
    assert frame.loc["no_batchnorm", "diff_ci"] == pytest.approx((stein.ci_low, stein.ci_high))
    assert frame.loc["no_batchnorm", "family_ci"] == pytest.approx((family.ci_low, family.ci_high))
    t_interval = inference.mean_ci(list(d))
    assert frame.loc["no_batchnorm", "diff_ci"] != pytest.approx(tuple(t_interval[1:]))
    s0 = float(np.std(d[:3], ddof=1))  # the cap of 6 cut the plan: its power is reported
    assert design.planned_seeds(s0, 3, 0.001, max_seeds=10**6, df=2) > 6
    power = design.stein_power(0.001, s0, 6, 2)
    assert frame.loc["no_batchnorm", "power_at_cap"] == pytest.approx(power)


def test_repeated_searches_show_each_choice_their_spread_and_expected_best_curves(tmp_path):
    """Two independent searches (--repeats 2): each choice re-trained, one family over both."""
    root = tmp_path / "results"
    other = dataclasses.replace(TUNED_CONFIG, lr=2e-3, hidden_widths=(1024, 512, 256))
    arms = {
        REFERENCE: Arm(REFERENCE, "the reference", Config(), tuple(range(5))),
        "tuned": Arm("tuned", "best of search 1", TUNED_CONFIG, tuple(range(5))),
        "tuned-repeat2": Arm("tuned-repeat2", "best of search 2", other, tuple(range(5))),
    }
    save_plan(Plan(arms, CONDITIONS, search={"epoch_cap": 30, "seed": 1_000_000}), root)
    second = search_summary() | {"study": "mlp-repeat2", "config": other.to_dict()}
    second["trials"] = [
        {"number": n, "state": "pruned" if n % 2 else "complete", "value": 0.97 + n / 500}
        for n in range(12)
    ]
    second["counts"] = {"complete": 6, "pruned": 6, "fail": 0}
    (root / SEARCH_SUMMARY_FILE).write_text(json.dumps(search_summary() | {"trial_seed": 10**6}))
    (root / "tuned-repeat2.json").write_text(json.dumps(second | {"trial_seed": 1_001_000}))
    store = RunStore(root)
    for seed in range(5):
        store.save(fake_record(REFERENCE, Config(), seed, REF[seed]))
        store.save(fake_record("tuned", TUNED_CONFIG, seed, TUNED_ACC[seed]))
        store.save(fake_record("tuned-repeat2", other, seed, REF[seed] + 0.0004))
    data = build.load_checked(root)
    assert list(data.searches) == ["tuned", "tuned-repeat2"]
    frame = comparisons.comparison_table(data).set_index("variant")
    assert set(frame.loc[["tuned", "tuned-repeat2"], "family"]) == {analysis.SELECTED}
    assert frame.loc["tuned", "family_confidence"] == pytest.approx(1 - 0.05 / 2)
    out = tmp_path / "reports"
    build.write_reports(data, out, frame.reset_index())
    search = (out / "search.md").read_text()
    variance = search[search.index("## The search's own variance") :]
    assert "| tuned-repeat2 " in variance and "1001000" in variance and "`mlp-repeat2`" in variance
    assert "6 / 6" in variance  # complete / pruned of the second search
    curve = search[search.index("## Expected best validation accuracy") :]
    first_row = cells(table_row(curve, "1"))  # n = 1: the mean of each search's trials
    assert first_row[1].startswith("98.10%") and first_row[2].startswith("98.10%")
    last = cells(table_row(curve, "12"))  # n = N of the second search: its best trial
    assert last[1] == "" and last[2].startswith("99.20%")
    assert (out / "plots" / "search_expected_best.png").stat().st_size > 1000
    assert (out / "data" / "tuned-repeat2.json").read_bytes() == (
        root / "tuned-repeat2.json"
    ).read_bytes()
