"""Reports from hand-made run records: every number recomputable, integrity rules enforced."""

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from harness import report, stats
from harness.config import Config
from harness.specs import load_spec
from harness.store import RunStore

PER_DIGIT = 1000


def fake_record(label, config, seed, accuracy, status="ok", epochs=3):
    """A stored-run record whose confusion matrix, per-digit and test accuracy agree."""
    correct = [round(PER_DIGIT * (accuracy + 0.004 * (d - 4.5) / 4.5)) for d in range(10)]
    confusion = np.zeros((10, 10), dtype=int)
    for digit, right in enumerate(correct):
        confusion[digit, digit] = right
        confusion[digit, (digit + 1) % 10] = PER_DIGIT - right
    history = [
        {
            "epoch": e,
            "train_loss": 0.5 / e,
            "train_accuracy": accuracy + 0.001,
            "val_loss": 0.4 / e,
            "val_accuracy": accuracy - 0.01 / e,
            "lr": 1e-3,
            "seconds": 1.0,
        }
        for e in range(1, epochs + 1)
    ]
    record = {
        "label": label,
        "config_hash": config.hash(),
        "seed": seed,
        "config": config.to_dict(),
        "status": status,
        "diverged_epoch": 2 if status != "ok" else None,
        "history": history,
        "parameters": 1000,
        "seconds_per_epoch": 1.0,
        "total_seconds": 3.0,
        "environment": {
            "python": "3.11",
            "torch": "2.14.1",
            "threads": 2,
            "cpu": "test CPU",
            "device": "cpu",
            "git_commit": "abc",
            "timestamp": "2026-11-26T00:00",
        },
    }
    if status == "ok":
        record["per_digit_accuracy"] = [c / PER_DIGIT for c in correct]
        record["confusion_matrix"] = confusion.tolist()
        record["metrics"] = {
            "test_accuracy": sum(correct) / (10 * PER_DIGIT),
            "test_loss": 0.05,
            "best_val_accuracy": accuracy - 0.01 / epochs,
            "best_epoch": epochs,
            "train_accuracy_at_best": accuracy + 0.001,
            "train_val_gap": 0.011 / epochs,
        }
    return record


REFERENCE_ACC = [0.981, 0.983, 0.980, 0.984, 0.982]
NO_BN_ACC = [0.975, 0.978, 0.976, 0.977, 0.979]


@pytest.fixture
def results(tmp_path):
    store = RunStore(tmp_path / "results")
    reference, no_bn = load_spec("reference").config, load_spec("no_batchnorm").config
    for seed, (a, b) in enumerate(zip(REFERENCE_ACC, NO_BN_ACC, strict=True)):
        store.save(fake_record("reference", reference, seed, a))
        store.save(fake_record("no_batchnorm", no_bn, seed, b))
    width_half = load_spec("width_half").config
    store.save(fake_record("width_half", width_half, 0, 0.979))  # one seed only
    store.save(fake_record("width_half", width_half, 1, 0.5, status="diverged"))
    stale = dataclasses.replace(Config(), dropout=(0.1, 0.0, 0.0))  # an older no_dropout
    store.save(fake_record("no_dropout", stale, 0, 0.99))
    return tmp_path / "results"


def test_summary_numbers_are_recomputable(results):
    study = report.load_study(results)
    summary = report.summary_frame(study).set_index("variant")
    reference = [
        r["metrics"]["test_accuracy"]
        for r in RunStore(results).records()
        if r["label"] == "reference"
    ]
    no_bn = [
        r["metrics"]["test_accuracy"]
        for r in RunStore(results).records()
        if r["label"] == "no_batchnorm"
    ]
    row = summary.loc["no_batchnorm"]
    assert row["n"] == 5 and row["mean"] == pytest.approx(np.mean(no_bn))
    assert row["diff"] == pytest.approx(np.mean(no_bn) - np.mean(reference))
    assert row["diff_ci"] == pytest.approx(stats.paired_difference_ci(no_bn, reference)[1:])
    assert row["p_t"] == pytest.approx(stats.paired_t_pvalue(no_bn, reference))
    # Holm over the two variants with a p-value (width_half has one pair: no p-value)
    assert row["p_holm"] == pytest.approx(row["p_t"])
    assert list(summary.index) == ["reference", "width_half", "no_batchnorm"]  # by effect


def test_integrity_stale_diverged_and_few_seeds(results):
    study = report.load_study(results)
    assert study.stale_count("no_dropout") == 1 and len(study.runs("no_dropout")) == 0
    summary = report.summary_frame(study).set_index("variant")
    assert summary.loc["width_half", "diverged"] == 1 and summary.loc["width_half", "n"] == 1
    text = report.summary_section(study, report.summary_frame(study))
    assert "`no_dropout`: 1 run(s) stored under an older version of its spec" in text
    assert "`width_half`: 1 run(s) diverged" in text
    assert "`width_half`: fewer seeds than the reference (1 vs 5)" in text
    width_half_row = next(line for line in text.splitlines() if "[width_half]" in line)
    assert "n/a" in width_half_row  # one seed: no interval, never a made-up number


def test_reports_are_complete_and_byte_identical(results, tmp_path):
    study = report.load_study(results)
    first = report.write_reports(study, tmp_path / "one").parent
    second = report.write_reports(report.load_study(results), tmp_path / "two").parent
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert {"README.md", "ablations.md", "per_digit.md", "claims.md"} <= {str(f) for f in files}
    assert any(str(f).startswith("plots/forest") for f in files)
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    runs = pd.read_csv(first / "runs.csv")
    assert len(runs) == 12 and set(runs["variant"]) == {"reference", "no_batchnorm", "width_half"}
    reference = runs[runs["variant"] == "reference"]
    summary = report.summary_frame(study).set_index("variant")
    assert reference["test_accuracy"].mean() == pytest.approx(summary.loc["reference", "mean"])
    claims = (first / "claims.md").read_text()
    assert "| 568,970 parameters" in claims and "1,000" in claims
    digits = (first / "per_digit.md").read_text()
    assert "Easiest digit: **9**" in digits and "hardest: **0**" in digits


def test_claims_rules(results):
    rows = {row["claim"]: row for row in report.claims_rows(report.load_study(results))}
    assert rows["568,970 parameters"][""] == "❌"
    assert rows["trained on CPU only"][""] == "✅"
    assert rows["exceeds the 98% target"][""] == "❌"  # seed 2 is at 98.0%, not above
    measured = [
        r["metrics"]["test_accuracy"]
        for r in RunStore(results).records()
        if r["label"] == "reference"
    ]
    assert f"measured {100 * np.mean(measured):.2f}%" in rows["test accuracy 98.16%"]["measured"]


def test_report_cli_regenerates_without_training(results, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "harness.report", "--results-dir", str(results), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "README.md").exists() and (out / "variants" / "no_batchnorm.md").exists()
