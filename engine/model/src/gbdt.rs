//! Gradient-boosted decision trees for binary log loss, histogram-based as in LightGBM: values
//! are bucketed once, each node's split is found from per-bucket gradient sums (a child's
//! histogram is its parent's minus its sibling's), trees grow best leaf first, categories split
//! by sorting them on their gradient ratio, missing values learn which way to go, and boosting
//! stops early when a validation slice stops improving.

mod grow;

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
            let tree = grow::grow(&bins, &binned, &gradient, &hessian, params, &mut model.gain);
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
