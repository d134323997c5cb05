"""The predictive scorer against its peers on the real lead data, on the very splits
`leadscore train` makes: scikit-learn's logistic regression pipeline and LightGBM's classifier.
A single 80/20 split of 9,240 rows moves the AUC by about ±0.006, so every model is measured on
the same five stratified splits (seeds 1-5) and the means are compared. Prints accuracy (ROC
AUC, log loss, Brier), training time, one-lead latency and batch predict throughput as a
Markdown table; leadscore's own speed figures come from criterion (`--bench predictive`).

    python3 -m venv bench/.venv && bench/.venv/bin/pip install scikit-learn lightgbm pandas
    cargo build --release
    bench/.venv/bin/python bench/peer_predictive.py
"""

import json
import pathlib
import subprocess
import tempfile
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

ROOT = pathlib.Path(__file__).resolve().parent.parent
LEADS = ROOT.parent / "shared" / "data" / "leads" / "Leads.csv"
DROP = ["Prospect ID", "Lead Number", "Tags", "Lead Quality", "Lead Profile", "Asymmetrique Activity Index",
        "Asymmetrique Profile Index", "Asymmetrique Activity Score", "Asymmetrique Profile Score"]


def leadscore(model, seed, out):
    """Trains with leadscore; returns its report and the held-out row positions."""
    report, split = out / f"{model}.report.json", out / "split.json"
    subprocess.run([ROOT / "target" / "release" / "leadscore", "train", "--csv", LEADS, "--target", "Converted",
                    "--drop", ",".join(DROP), "--model", model, "--seed", str(seed), "--out", out / f"{model}.json",
                    "--report-json", report, "--write-split", split], check=True, capture_output=True)
    return json.loads(report.read_text()), json.loads(split.read_text())["test_rows"]


def median_seconds(work, runs):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


SEEDS = [1, 2, 3, 4, 5]


def main():
    frame = pd.read_csv(LEADS, na_values=["Select"], keep_default_na=True)
    y = frame.pop("Converted").to_numpy()
    x = frame.drop(columns=DROP)
    categorical = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c])]
    numeric = [c for c in x.columns if c not in categorical]
    lgb_x = x.copy()
    for c in categorical:
        lgb_x[c] = lgb_x[c].astype("category")

    def sklearn_lr():
        return make_pipeline(
            ColumnTransformer([
                ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                             OneHotEncoder(handle_unknown="ignore")), categorical),
            ]),
            LogisticRegression(C=1.0, max_iter=5000),
        )

    names = ["scikit-learn LogisticRegression", "LightGBM LGBMClassifier (defaults)", "leadscore lr", "leadscore gbdt"]
    scores = {name: [] for name in names}
    speed = {}
    for seed in SEEDS:
        with tempfile.TemporaryDirectory() as tmp:
            ours = {model: leadscore(model, seed, pathlib.Path(tmp)) for model in ["lr", "gbdt"]}
        test_rows = ours["lr"][1]
        test = np.zeros(len(x), dtype=bool)
        test[test_rows] = True
        y_train, y_test = y[~test], y[test]

        pipeline = sklearn_lr()
        fit = median_seconds(lambda: pipeline.fit(x[~test], y_train), 3)
        p = pipeline.predict_proba(x[test])[:, 1]
        scores[names[0]].append((y_test, p))
        if seed == SEEDS[0]:
            one = median_seconds(lambda: pipeline.predict_proba(x[test].iloc[[0]]), 200)
            speed[names[0]] = (fit, one, None)

        classifier = lgb.LGBMClassifier(verbose=-1, random_state=42)
        fit = median_seconds(lambda: classifier.fit(lgb_x[~test], y_train), 3)
        p = classifier.predict_proba(lgb_x[test])[:, 1]
        scores[names[1]].append((y_test, p))
        if seed == SEEDS[0]:
            # LightGBM's own predict on encoded rows (category codes), without pandas conversion.
            encoded = lgb_x[test].copy()
            for c in categorical:
                encoded[c] = encoded[c].cat.codes.replace(-1, np.nan)
            encoded = encoded.to_numpy(dtype=np.float64)
            big = np.repeat(encoded, 50, axis=0)
            booster = classifier.booster_
            batch = median_seconds(lambda: booster.predict(big), 5)
            single = median_seconds(lambda: booster.predict(big, num_threads=1), 5)
            one = median_seconds(lambda: booster.predict(encoded[:1]), 200)
            speed[names[1]] = (fit, one, len(big) / batch)
            print(f"LightGBM predict on one thread: {len(big) / single:,.0f} rows/s; "
                  f"{len(big)} encoded rows, {booster.num_trees()} trees")
            held_out = median_seconds(lambda: booster.predict(encoded), 21)
            held_out_single = median_seconds(lambda: booster.predict(encoded, num_threads=1), 21)
            print(f"LightGBM predict on the {len(encoded)} held-out rows once: {len(encoded) / held_out:,.0f} rows/s "
                  f"(default threads), {len(encoded) / held_out_single:,.0f} rows/s (one thread)")

        for model, name in [("lr", names[2]), ("gbdt", names[3])]:
            report = ours[model][0]
            scores[name].append(report["holdout"])
            if seed == SEEDS[0]:
                speed[name] = (report["seconds"], None, None)

    print(f"mean over {len(SEEDS)} stratified 80/20 splits (seeds {SEEDS[0]}-{SEEDS[-1]}); speed on seed {SEEDS[0]}\n")
    print("| model | ROC AUC | log loss | Brier | AUC per split | training | one lead | batch rows/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        if name.startswith("leadscore"):
            aucs = [h["auc"] for h in scores[name]]
            losses = [h["log_loss"] for h in scores[name]]
            briers = [h["brier"] for h in scores[name]]
        else:
            aucs = [roc_auc_score(t, p) for t, p in scores[name]]
            losses = [log_loss(t, p) for t, p in scores[name]]
            briers = [brier_score_loss(t, p) for t, p in scores[name]]
        fit, one, rate = speed[name]
        print(f"| {name} | {np.mean(aucs):.4f} | {np.mean(losses):.4f} | {np.mean(briers):.4f} | "
              f"{' '.join(f'{a:.3f}' for a in aucs)} | {fit:.3f} s | "
              f"{'criterion' if one is None else f'{one * 1e6:,.0f} µs'} | "
              f"{'criterion' if rate is None and name.startswith('leadscore') else (f'{rate:,.0f}' if rate else '-')} |")


if __name__ == "__main__":
    main()
