"""Logistic regression on the data set that made it diverge, beside scikit-learn's.

`bench/src/bin/lr-data` writes the synthetic "unknown majority" data (a previous-campaign
outcome that is "unknown" for 90% of rows beside rare categories converting at about 65%, and a
balance with enormous tails) as one train/test split. This script fits `leadscore train --model
lr` and scikit-learn's LogisticRegression (C=1, the same L2 strength; numbers median-imputed and
standardised, categories one-hot) on those very files and prints held-out ROC AUC, log loss
and fit time as a Markdown table, over seeds 1-5. Set LEADSCORE_OLD to another leadscore binary
to put its figures beside (the build before the fix predicts 1 or the wrong way round).

    python3 -m venv bench/.venv && bench/.venv/bin/pip install scikit-learn pandas
    cargo build --release
    bench/.venv/bin/python bench/peer_lr.py
"""

import json
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

ROOT = pathlib.Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"


def leadscore(binary, data, out):
    started = time.perf_counter()
    run = subprocess.run(
        [binary, "train", "--csv", data / "train.csv", "--test-csv", data / "test.csv", "--target", "y",
         "--model", "lr", "--out", out],
        capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        return None, None, seconds, run.stderr.strip().splitlines()[-1]
    holdout = json.loads(out.read_text())["holdout"]
    return holdout["auc"], holdout["log_loss"], seconds, ""


def sklearn(data):
    train, test = pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv")
    numbers, categories = ["age", "balance"], ["poutcome"]
    model = make_pipeline(
        ColumnTransformer([
            ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
            ("categories", OneHotEncoder(handle_unknown="ignore"), categories),
        ]),
        LogisticRegression(C=1.0, max_iter=1000),
    )
    started = time.perf_counter()
    model.fit(train[numbers + categories], train["y"])
    seconds = time.perf_counter() - started
    p = model.predict_proba(test[numbers + categories])[:, 1]
    return roc_auc_score(test["y"], p), log_loss(test["y"], p), seconds, ""


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "leadscore-bench", "--bin", "lr-data"], check=True,
                   cwd=ROOT)
    peers = {"leadscore lr": lambda d, o: leadscore(RELEASE / "leadscore", d, o), "scikit-learn": lambda d, o: sklearn(d)}
    if os.environ.get("LEADSCORE_OLD"):
        peers["leadscore lr (LEADSCORE_OLD)"] = lambda d, o: leadscore(os.environ["LEADSCORE_OLD"], d, o)
    results = {name: [] for name in peers}
    for seed in range(1, 6):
        with tempfile.TemporaryDirectory() as tmp:
            data = pathlib.Path(tmp)
            made = subprocess.run([RELEASE / "lr-data", data, str(seed)], capture_output=True, text=True, check=True)
            print(f"seed {seed}: {made.stdout.strip()}")
            for name, fit in peers.items():
                results[name].append(fit(data, data / "model.json"))
    print("\n| model | ROC AUC (mean of 5) | log loss (mean of 5) | fit s (median) | notes |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        done = [r for r in runs if r[0] is not None]
        auc = f"{statistics.mean(r[0] for r in done):.4f}" if done else "-"
        loss = f"{statistics.mean(r[1] for r in done):.4f}" if done else "-"
        seconds = statistics.median(r[2] for r in runs)
        notes = "; ".join(sorted({r[3] for r in runs if r[3]}))
        print(f"| {name} | {auc} | {loss} | {seconds:.2f} | {notes} |")


if __name__ == "__main__":
    main()
