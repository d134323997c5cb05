"""Trains LightGBM on the real lead file the way data scientists do, in every shape the
predictive scorer must serve exactly, and writes for each shape its text model and 500 leads
with `booster.predict`'s probabilities; then the malformed files a model can become.

Usage: train_shapes.py LEADS_CSV OUT_DIR

Writes OUT_DIR/<shape>.txt and OUT_DIR/<shape>.csv (the leads' attributes as text, blank when
missing, and `probability`); OUT_DIR/refused_<case>.txt for files the scorer must refuse.
"""

import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

# The ids and the staff-filled columns that give the outcome away (PROVENANCE.md).
LEAKS = ["Prospect ID", "Lead Number", "Tags", "Lead Quality", "Lead Profile", "Asymmetrique Activity Index",
         "Asymmetrique Profile Index", "Asymmetrique Activity Score", "Asymmetrique Profile Score"]
PARAMS = dict(objective="binary", num_leaves=63, learning_rate=0.05, min_child_samples=10, seed=7, verbose=-1)

leads, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
frame = pd.read_csv(leads)
label = frame.pop("Converted")
frame = frame.drop(columns=LEAKS)
text = list(frame.select_dtypes(exclude="number").columns)
for column in text:
    frame[column] = frame[column].astype("category")

rng = np.random.default_rng(11)
order = rng.permutation(len(frame))
train, test = order[:-500], order[-500:]
# Leads as they come: a category spelled otherwise than in training, and one never seen.
scored = frame.iloc[test].copy()
for column, value in [("Lead Source", "GOOGLE"), ("City", "Atlantis")]:
    assert value not in frame[column].cat.categories, (column, value)
    scored[column] = scored[column].cat.add_categories([value])
    scored.iloc[rng.choice(len(scored), 25, replace=False), scored.columns.get_loc(column)] = value


def cells(rows):
    """Each value as the lead's attribute text: blank when missing, whole numbers without ".0"."""
    def text(value):
        if pd.isna(value):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return rows.astype(object).map(text)


def write(shape, rows, probabilities, booster=None):
    if booster is not None:
        booster.save_model(out / f"{shape}.txt")
    table = cells(rows)
    table["probability"] = [repr(float(p)) for p in probabilities]
    table.to_csv(out / f"{shape}.csv", index=False)


def fit(x, y, rounds=300, categorical="auto", valid=None, **params):
    data = lgb.Dataset(x, y, categorical_feature=categorical)
    if valid is None:
        return lgb.train({**PARAMS, **params}, data, num_boost_round=rounds)
    valid = lgb.Dataset(*valid, reference=data)
    return lgb.train({**PARAMS, **params}, data, num_boost_round=rounds, valid_sets=[valid],
                     callbacks=[lgb.early_stopping(20, verbose=False)])


# The usual way: pandas categories (constant ones unused by any tree), NaN left as NaN.
booster = fit(frame.iloc[train], label.iloc[train])
write("pandas", scored, booster.predict(scored), booster)

for shape, params in [("unbalanced", dict(is_unbalance=True)), ("weighted", dict(scale_pos_weight=3.0))]:
    weighted = fit(frame.iloc[train], label.iloc[train], **params)
    write(shape, scored, weighted.predict(scored), weighted)

# Early stopping: the file holds the best iteration's trees.
held_out = train[-1000:]
stopped = fit(frame.iloc[train[:-1000]], label.iloc[train[:-1000]], rounds=1000,
              valid=(frame.iloc[held_out], label.iloc[held_out]))
assert 0 < stopped.best_iteration < 1000, stopped.best_iteration
stopped.save_model(out / "early_stopping.txt")
write("early_stopping", scored, stopped.predict(scored, num_iteration=stopped.best_iteration))

# Saved below the tree count.
booster.save_model(out / "num_iteration.txt", num_iteration=120)
write("num_iteration", scored, booster.predict(scored, num_iteration=120))

# Integer-coded categories: codes given as categorical features, no pandas lists.
coded, scored_coded = frame.copy(), scored.copy()
for column in text:
    codes = {value: code for code, value in enumerate(frame[column].cat.categories)}
    coded[column] = frame[column].cat.codes.astype(int)
    scored_coded[column] = scored[column].astype(object).map(lambda v: codes.get(v, -1)).astype(int)
model = fit(coded.iloc[train], label.iloc[train], categorical=text)
write("integer_codes", scored_coded, model.predict(scored_coded), model)

# What must be refused: linear trees, and files cut short.
fit(frame.iloc[train], label.iloc[train], linear_tree=True).save_model(out / "refused_linear_tree.txt")
whole = (out / "pandas.txt").read_text()
# 150 of the 300 trees, the rest of the file kept.
trees, tail = whole.split("\nend of trees", 1)
(out / "refused_cut_at_a_tree.txt").write_text("\nTree=".join(trees.split("\nTree=")[:151]) + "\nend of trees" + tail)
(out / "refused_cut_before_pandas.txt").write_text(whole.split("pandas_categorical:")[0])
at = whole.index("cat_boundaries=")
(out / "refused_cut_in_cat_boundaries.txt").write_text(whole[: at + len("cat_boundaries=0 1")])
print(f"wrote {len(list(out.glob('*.txt')))} models to {out}")
