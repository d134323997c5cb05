//! Gradient-boosted decision trees for binary log loss, histogram-based as in LightGBM: values
//! are bucketed once, each node's split is found from per-bucket gradient sums (a child's
//! histogram is its parent's minus its sibling's), trees grow best leaf first, categories split
//! by sorting them on their gradient ratio, missing values learn which way to go, and boosting
//! stops early when a validation slice stops improving.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::lr::sigmoid;
use crate::schema::{Kind, Schema};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub learning_rate: f64,
    pub max_leaves: usize,
    pub min_data_in_leaf: usize,
    pub min_hessian_in_leaf: f64,
    /// L2 penalty on leaf values.
    pub lambda: f64,
    pub max_rounds: usize,
    /// Stop when the validation loss has not improved for this many rounds.
    pub early_stopping_rounds: usize,
    pub max_bins: usize,
    /// Added to a category's hessian when categories are ordered for a split, so rare ones do
    /// not jump to the ends.
    pub cat_smooth: f64,
    /// Categories seen fewer times than this in training share the "other" bin.
    pub min_category_rows: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            learning_rate: 0.2,
            max_leaves: 15,
            min_data_in_leaf: 20,
            min_hessian_in_leaf: 1e-3,
            lambda: 1.0,
            max_rounds: 2000,
            early_stopping_rounds: 50,
            max_bins: 255,
            cat_smooth: 10.0,
            min_category_rows: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gbdt {
    /// The log-odds every prediction starts from.
    pub base: f64,
    pub trees: Vec<Tree>,
    /// Total split gain per feature, for importance.
    pub gain: Vec<f64>,
    /// The trees laid out for fast evaluation, built on first use.
    #[serde(skip)]
    compiled: Cache,
}

/// The compiled trees: derived from `trees`, so never part of equality or the file.
#[derive(Clone, Default)]
struct Cache(OnceLock<Compiled>);

impl PartialEq for Cache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

/// Every tree's nodes in one array of small plain records, so that evaluation touches little
/// memory and never matches on an enum.
#[derive(Clone, Debug, Default)]
struct Compiled {
    nodes: Vec<Flat>,
    /// Each tree's root in `nodes`.
    roots: Vec<u32>,
    /// Category sets of categorical splits, sorted, back to back.
    categories: Vec<u32>,
}

#[derive(Clone, Copy, Debug)]
struct Flat {
    /// The split threshold, or the leaf's value.
    value: f64,
    feature: u32,
    /// Children in `nodes`; a leaf has `left == u32::MAX`.
    left: u32,
    right: u32,
    test: Test,
    /// For a categorical split over indices below 64, the set as a bit mask.
    mask: u64,
    /// For other categorical splits, the set's range in `categories`.
    categories_start: u32,
    categories_len: u32,
    missing_left: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    Leaf,
    Threshold,
    Mask,
    List,
}

impl Compiled {
    fn new(trees: &[Tree]) -> Self {
        let mut compiled = Compiled::default();
        for tree in trees {
            let offset = compiled.nodes.len() as u32;
            compiled.roots.push(offset);
            for node in &tree.nodes {
                let flat = match node {
                    Node::Leaf { value } => Flat {
                        value: *value,
                        feature: 0,
                        left: 0,
                        right: 0,
                        test: Test::Leaf,
                        mask: 0,
                        categories_start: 0,
                        categories_len: 0,
                        missing_left: false,
                    },
                    Node::Split { feature, rule, missing_left, left, right, .. } => {
                        let (value, test, mask, categories_start, categories_len) = match rule {
                            Rule::Threshold(t) => (*t, Test::Threshold, 0, 0, 0),
                            Rule::Categories(set) if set.iter().all(|c| *c < 64) => {
                                (0.0, Test::Mask, set.iter().fold(0u64, |m, c| m | 1 << c), 0, 0)
                            }
                            Rule::Categories(set) => {
                                let start = compiled.categories.len() as u32;
                                compiled.categories.extend_from_slice(set);
                                (0.0, Test::List, 0, start, set.len() as u32)
                            }
                        };
                        Flat {
                            value,
                            feature: *feature as u32,
                            left: offset + left,
                            right: offset + right,
                            test,
                            mask,
                            categories_start,
                            categories_len,
                            missing_left: *missing_left,
                        }
                    }
                };
                compiled.nodes.push(flat);
            }
        }
        compiled
    }

    fn predict(&self, root: u32, row: &[f64]) -> f64 {
        let mut node = &self.nodes[root as usize];
        while node.test != Test::Leaf {
            let x = row[node.feature as usize];
            let goes_left = if x.is_nan() {
                node.missing_left
            } else if node.test == Test::Threshold {
                x <= node.value
            } else if node.test == Test::Mask {
                (node.mask >> (x as u64).min(63)) & 1 == 1 && x < 64.0
            } else {
                let start = node.categories_start as usize;
                let set = &self.categories[start..start + node.categories_len as usize];
                set.binary_search(&(x as u32)).is_ok()
            };
            node = &self.nodes[if goes_left { node.left } else { node.right } as usize];
        }
        node.value
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The root first.
    pub nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    Split {
        feature: usize,
        rule: Rule,
        /// Where a missing value goes.
        missing_left: bool,
        left: u32,
        right: u32,
        /// What the tree would predict if it stopped here; contributions are the changes of
        /// this value along a row's path.
        value: f64,
    },
    Leaf {
        value: f64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Values at most this go left.
    Threshold(f64),
    /// These category indices go left; all others (unseen ones included) go right.
    Categories(Vec<u32>),
}

impl Tree {
    /// The node a row goes to from split `index`.
    fn next(&self, index: usize, row: &[f64]) -> Option<usize> {
        let Node::Split { feature, rule, missing_left, left, right, .. } = &self.nodes[index] else { return None };
        let x = row[*feature];
        let goes_left = if x.is_nan() {
            *missing_left
        } else {
            match rule {
                Rule::Threshold(t) => x <= *t,
                Rule::Categories(set) => set.binary_search(&(x as u32)).is_ok(),
            }
        };
        Some(if goes_left { *left } else { *right } as usize)
    }

    /// The nodes a row passes through, root to leaf.
    fn path(&self, row: &[f64]) -> Vec<usize> {
        let mut path = vec![0];
        while let Some(next) = self.next(*path.last().expect("starts at the root"), row) {
            path.push(next);
        }
        path
    }

    pub fn predict(&self, row: &[f64]) -> f64 {
        let mut index = 0;
        while let Some(next) = self.next(index, row) {
            index = next;
        }
        node_value(&self.nodes[index])
    }
}

fn node_value(node: &Node) -> f64 {
    match node {
        Node::Split { value, .. } | Node::Leaf { value } => *value,
    }
}

impl Gbdt {
    fn compiled(&self) -> &Compiled {
        self.compiled.0.get_or_init(|| Compiled::new(&self.trees))
    }

    pub fn logit(&self, row: &[f64]) -> f64 {
        let compiled = self.compiled();
        self.base + compiled.roots.iter().map(|&root| compiled.predict(root, row)).sum::<f64>()
    }

    /// The log-odds of many rows, tree by tree, so that the tree at hand stays in cache while
    /// every row passes through it.
    pub fn logits(&self, rows: &[Vec<f64>], out: &mut [f64]) {
        let compiled = self.compiled();
        out.fill(self.base);
        for &root in &compiled.roots {
            for (row, z) in rows.iter().zip(out.iter_mut()) {
                *z += compiled.predict(root, row);
            }
        }
    }

    /// Each feature's part of the log-odds, by the changes of node values along each tree's
    /// path (Saabas); with the base and the roots' values they add up to the log-odds.
    pub fn contributions(&self, row: &[f64], features: usize) -> (f64, Vec<f64>) {
        let mut parts = vec![0.0; features];
        let mut bias = self.base;
        for tree in &self.trees {
            let path = tree.path(row);
            bias += node_value(&tree.nodes[0]);
            for pair in path.windows(2) {
                if let Node::Split { feature, .. } = &tree.nodes[pair[0]] {
                    parts[*feature] += node_value(&tree.nodes[pair[1]]) - node_value(&tree.nodes[pair[0]]);
                }
            }
        }
        (bias, parts)
    }

    /// Boosts trees on `rows`, stopping early on `valid`. `progress` is told each round's
    /// number and validation loss.
    pub fn fit(
        schema: &Schema,
        rows: &[Vec<f64>],
        target: &[bool],
        valid: (&[Vec<f64>], &[bool]),
        params: &Params,
        mut progress: impl FnMut(usize, f64),
    ) -> Self {
        let bins = Binning::new(schema, rows, params.max_bins, params.min_category_rows);
        let binned = bins.bin_rows(rows);
        let y: Vec<f64> = target.iter().map(|t| f64::from(u8::from(*t))).collect();
        let positives = y.iter().sum::<f64>();
        let base = (positives / (y.len() as f64 - positives)).ln();
        let mut raw = vec![base; rows.len()];
        let mut valid_raw = vec![base; valid.0.len()];
        let mut model =
            Gbdt { base, trees: Vec::new(), gain: vec![0.0; schema.features.len()], compiled: Cache::default() };
        let (mut best_loss, mut best_rounds) = (f64::INFINITY, 0);
        let (mut gradient, mut hessian) = (vec![0.0; rows.len()], vec![0.0; rows.len()]);
        for round in 0..params.max_rounds {
            for i in 0..rows.len() {
                let p = sigmoid(raw[i]);
                gradient[i] = p - y[i];
                hessian[i] = (p * (1.0 - p)).max(1e-16);
            }
            let tree = grow(&bins, &binned, &gradient, &hessian, params, &mut model.gain);
            for (r, row) in raw.iter_mut().zip(rows) {
                *r += tree.predict(row);
            }
            for (r, row) in valid_raw.iter_mut().zip(valid.0) {
                *r += tree.predict(row);
            }
            model.trees.push(tree);
            let probabilities: Vec<f64> = valid_raw.iter().map(|z| sigmoid(*z)).collect();
            let loss = crate::metrics::log_loss(&probabilities, valid.1);
            progress(round + 1, loss);
            if loss < best_loss - 1e-9 {
                (best_loss, best_rounds) = (loss, round + 1);
            } else if round + 1 - best_rounds >= params.early_stopping_rounds {
                break;
            }
        }
        model.trees.truncate(best_rounds.max(1));
        model
    }
}

/// How each feature's values map to histogram bins. The last bin of every feature is
/// "missing".
struct Binning {
    features: Vec<FeatureBins>,
    /// Where each feature's bins start in a flat histogram.
    offsets: Vec<usize>,
    total: usize,
}

enum FeatureBins {
    /// Upper bounds of the value bins, ascending.
    Numeric(Vec<f64>),
    /// The bin of each category index; rare categories share the last ("other") index's bin.
    Categorical(Vec<u16>),
}

impl FeatureBins {
    fn count(&self) -> usize {
        match self {
            FeatureBins::Numeric(uppers) => uppers.len() + 1,
            FeatureBins::Categorical(bins) => bins.len() + 1,
        }
    }

    fn bin(&self, x: f64) -> u16 {
        let missing = (self.count() - 1) as u16;
        if x.is_nan() {
            return missing;
        }
        match self {
            FeatureBins::Numeric(uppers) => uppers.partition_point(|u| *u < x).min(uppers.len() - 1) as u16,
            FeatureBins::Categorical(bins) => bins[(x as usize).min(bins.len() - 1)],
        }
    }
}

impl Binning {
    fn new(schema: &Schema, rows: &[Vec<f64>], max_bins: usize, min_category_rows: usize) -> Self {
        let features: Vec<FeatureBins> = schema
            .features
            .iter()
            .enumerate()
            .map(|(f, feature)| match &feature.kind {
                Kind::Categorical { .. } => {
                    let n = feature.cardinality();
                    let mut counts = vec![0usize; n];
                    for x in rows.iter().map(|r| r[f]).filter(|x| !x.is_nan()) {
                        counts[(x as usize).min(n - 1)] += 1;
                    }
                    let other = (n - 1) as u16;
                    let bins = counts
                        .iter()
                        .enumerate()
                        .map(|(i, c)| if *c >= min_category_rows { i as u16 } else { other })
                        .collect();
                    FeatureBins::Categorical(bins)
                }
                _ => {
                    let mut values: Vec<f64> = rows.iter().map(|r| r[f]).filter(|x| !x.is_nan()).collect();
                    values.sort_by(f64::total_cmp);
                    FeatureBins::Numeric(uppers(&values, max_bins - 1))
                }
            })
            .collect();
        let mut offsets = Vec::with_capacity(features.len());
        let mut total = 0;
        for feature in &features {
            offsets.push(total);
            total += feature.count();
        }
        Self { features, offsets, total }
    }

    /// Column-major bins: `binned[feature][row]`.
    fn bin_rows(&self, rows: &[Vec<f64>]) -> Vec<Vec<u16>> {
        self.features.iter().enumerate().map(|(f, bins)| rows.iter().map(|r| bins.bin(r[f])).collect()).collect()
    }
}

/// Bin upper bounds for sorted values: one bin per distinct value when there are few,
/// otherwise quantiles; each bound halfway to the next value. The last bound is infinite.
fn uppers(sorted: &[f64], max_bins: usize) -> Vec<f64> {
    let mut distinct: Vec<f64> = sorted.to_vec();
    distinct.dedup();
    let cuts: Vec<f64> = if distinct.len() <= max_bins {
        distinct.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
    } else {
        let mut cuts: Vec<f64> = (1..max_bins)
            .map(|q| {
                let i = q * sorted.len() / max_bins;
                let next = distinct.partition_point(|d| *d <= sorted[i]);
                match distinct.get(next) {
                    Some(above) => (sorted[i] + above) / 2.0,
                    None => f64::INFINITY,
                }
            })
            .filter(|c| c.is_finite())
            .collect();
        cuts.dedup();
        cuts
    };
    let mut uppers = cuts;
    uppers.push(f64::INFINITY);
    uppers
}

/// Sums of gradients, hessians and rows in one bin.
#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

struct Candidate {
    gain: f64,
    feature: usize,
    /// Bins that go left (for numbers, those up to a threshold bin).
    left_bins: Vec<u16>,
    threshold: Option<f64>,
    missing_left: bool,
}

struct Open {
    rows: Vec<u32>,
    histogram: Vec<Bin>,
    node: usize,
    best: Option<Candidate>,
}

fn grow(
    bins: &Binning,
    binned: &[Vec<u16>],
    gradient: &[f64],
    hessian: &[f64],
    params: &Params,
    gain_per_feature: &mut [f64],
) -> Tree {
    let rows: Vec<u32> = (0..gradient.len() as u32).collect();
    let histogram = build_histogram(bins, binned, gradient, hessian, &rows);
    let mut nodes = vec![Node::Leaf { value: leaf_value(&histogram[..bins.features[0].count()], params) }];
    let mut open = vec![Open { best: best_split(bins, &histogram, params), rows, histogram, node: 0 }];
    let mut leaves = 1;
    while leaves < params.max_leaves {
        let Some(pick) = (0..open.len())
            .filter(|&i| open[i].best.is_some())
            .max_by(|&a, &b| open[a].best.as_ref().unwrap().gain.total_cmp(&open[b].best.as_ref().unwrap().gain))
        else {
            break;
        };
        let parent = open.swap_remove(pick);
        let split = parent.best.expect("picked for its split");
        gain_per_feature[split.feature] += split.gain;
        let column = &binned[split.feature];
        let (left_rows, right_rows): (Vec<u32>, Vec<u32>) =
            parent.rows.iter().partition(|&&r| split.left_bins.binary_search(&column[r as usize]).is_ok());
        let (small, large_is_left) =
            if left_rows.len() <= right_rows.len() { (&left_rows, false) } else { (&right_rows, true) };
        let small_histogram = build_histogram(bins, binned, gradient, hessian, small);
        let large_histogram: Vec<Bin> = parent
            .histogram
            .iter()
            .zip(&small_histogram)
            .map(|(p, s)| Bin { g: p.g - s.g, h: p.h - s.h, n: p.n - s.n })
            .collect();
        let (left_histogram, right_histogram) =
            if large_is_left { (large_histogram, small_histogram) } else { (small_histogram, large_histogram) };
        let first = bins.features[0].count();
        let (left, right) = (nodes.len(), nodes.len() + 1);
        nodes.push(Node::Leaf { value: leaf_value(&left_histogram[..first], params) });
        nodes.push(Node::Leaf { value: leaf_value(&right_histogram[..first], params) });
        let value = node_value(&nodes[parent.node]);
        let rule = match (&bins.features[split.feature], split.threshold) {
            (FeatureBins::Categorical(category_bins), _) => Rule::Categories(
                (0..category_bins.len() as u32)
                    .filter(|&c| split.left_bins.binary_search(&category_bins[c as usize]).is_ok())
                    .collect(),
            ),
            (_, threshold) => Rule::Threshold(threshold.expect("numeric splits have a threshold")),
        };
        nodes[parent.node] = Node::Split {
            feature: split.feature,
            rule,
            missing_left: split.missing_left,
            left: left as u32,
            right: right as u32,
            value,
        };
        leaves += 1;
        for (rows, histogram, node) in [(left_rows, left_histogram, left), (right_rows, right_histogram, right)] {
            let best = best_split(bins, &histogram, params);
            open.push(Open { rows, histogram, node, best });
        }
    }
    Tree { nodes }
}

fn build_histogram(bins: &Binning, binned: &[Vec<u16>], gradient: &[f64], hessian: &[f64], rows: &[u32]) -> Vec<Bin> {
    let mut histogram = vec![Bin::default(); bins.total];
    for (f, column) in binned.iter().enumerate() {
        let part = &mut histogram[bins.offsets[f]..bins.offsets[f] + bins.features[f].count()];
        for &r in rows {
            let bin = &mut part[column[r as usize] as usize];
            bin.g += gradient[r as usize];
            bin.h += hessian[r as usize];
            bin.n += 1;
        }
    }
    histogram
}

/// A node's output from one feature's bins (any feature's bins sum to the node's totals).
fn leaf_value(feature_bins: &[Bin], params: &Params) -> f64 {
    let (g, h) = feature_bins.iter().fold((0.0, 0.0), |(g, h), b| (g + b.g, h + b.h));
    -params.learning_rate * g / (h + params.lambda)
}

fn best_split(bins: &Binning, histogram: &[Bin], params: &Params) -> Option<Candidate> {
    let mut best: Option<Candidate> = None;
    for (f, feature) in bins.features.iter().enumerate() {
        let part = &histogram[bins.offsets[f]..bins.offsets[f] + feature.count()];
        let candidate = match feature {
            FeatureBins::Numeric(uppers) => numeric_split(f, uppers, part, params),
            FeatureBins::Categorical(_) => categorical_split(f, part, params),
        };
        if let Some(c) = candidate
            && best.as_ref().is_none_or(|b| c.gain > b.gain)
        {
            best = Some(c);
        }
    }
    best
}

fn score(g: f64, h: f64, lambda: f64) -> f64 {
    g * g / (h + lambda)
}

fn allowed(left: &Bin, right: &Bin, params: &Params) -> bool {
    left.n as usize >= params.min_data_in_leaf
        && right.n as usize >= params.min_data_in_leaf
        && left.h >= params.min_hessian_in_leaf
        && right.h >= params.min_hessian_in_leaf
}

fn total(bins: &[Bin]) -> Bin {
    bins.iter().fold(Bin::default(), |t, b| Bin { g: t.g + b.g, h: t.h + b.h, n: t.n + b.n })
}

fn numeric_split(feature: usize, uppers: &[f64], part: &[Bin], params: &Params) -> Option<Candidate> {
    let (values, missing) = part.split_at(part.len() - 1);
    let missing = missing[0];
    let all = total(part);
    let parent = score(all.g, all.h, params.lambda);
    let mut best: Option<Candidate> = None;
    let mut left = Bin::default();
    for (t, bin) in values.iter().enumerate().take(values.len().saturating_sub(1)) {
        left = Bin { g: left.g + bin.g, h: left.h + bin.h, n: left.n + bin.n };
        for missing_left in [false, true] {
            let l = if missing_left {
                Bin { g: left.g + missing.g, h: left.h + missing.h, n: left.n + missing.n }
            } else {
                left
            };
            let r = Bin { g: all.g - l.g, h: all.h - l.h, n: all.n - l.n };
            if !allowed(&l, &r, params) {
                continue;
            }
            let gain = score(l.g, l.h, params.lambda) + score(r.g, r.h, params.lambda) - parent;
            if gain > 1e-12 && best.as_ref().is_none_or(|b| gain > b.gain) {
                let mut left_bins: Vec<u16> = (0..=t as u16).collect();
                if missing_left {
                    left_bins.push(values.len() as u16);
                }
                best = Some(Candidate { gain, feature, left_bins, threshold: Some(uppers[t]), missing_left });
            }
        }
    }
    best
}

fn categorical_split(feature: usize, part: &[Bin], params: &Params) -> Option<Candidate> {
    let all = total(part);
    let parent = score(all.g, all.h, params.lambda);
    let missing = part.len() - 1;
    let mut order: Vec<usize> = (0..part.len()).filter(|&b| part[b].n > 0).collect();
    order.sort_by(|&a, &b| {
        let ratio = |i: usize| part[i].g / (part[i].h + params.cat_smooth);
        ratio(a).total_cmp(&ratio(b))
    });
    let mut best: Option<Candidate> = None;
    let mut left = Bin::default();
    for (k, &b) in order.iter().enumerate().take(order.len().saturating_sub(1)) {
        left = Bin { g: left.g + part[b].g, h: left.h + part[b].h, n: left.n + part[b].n };
        let right = Bin { g: all.g - left.g, h: all.h - left.h, n: all.n - left.n };
        if !allowed(&left, &right, params) {
            continue;
        }
        let gain = score(left.g, left.h, params.lambda) + score(right.g, right.h, params.lambda) - parent;
        if gain > 1e-12 && best.as_ref().is_none_or(|c| gain > c.gain) {
            let mut left_bins: Vec<u16> = order[..=k].iter().map(|&i| i as u16).collect();
            left_bins.sort_unstable();
            let missing_left = left_bins.binary_search(&(missing as u16)).is_ok();
            best = Some(Candidate { gain, feature, left_bins, threshold: None, missing_left });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_keep_distinct_values_apart_or_use_quantiles() {
        assert_eq!(uppers(&[1.0, 1.0, 2.0, 4.0], 10), [1.5, 3.0, f64::INFINITY]);
        let many: Vec<f64> = (0..1000).map(f64::from).collect();
        let bounds = uppers(&many, 10);
        assert_eq!(bounds.len(), 10);
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
    }
}
