//! Growing one tree: per-bucket gradient histograms, the best split of each leaf (numeric or
//! categorical), best leaf first.

use super::*;

/// Sums of gradients, hessians and rows in one bin.
#[derive(Clone, Copy, Default)]
pub(super) struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

pub(super) struct Candidate {
    gain: f64,
    feature: usize,
    /// Bins that go left (for numbers, those up to a threshold bin).
    left_bins: Vec<u16>,
    threshold: Option<f64>,
    missing_left: bool,
}

pub(super) struct Open {
    rows: Vec<u32>,
    histogram: Vec<Bin>,
    node: usize,
    best: Option<Candidate>,
}

pub(super) fn grow(
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

pub(super) fn build_histogram(
    bins: &Binning,
    binned: &[Vec<u16>],
    gradient: &[f64],
    hessian: &[f64],
    rows: &[u32],
) -> Vec<Bin> {
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
pub(super) fn leaf_value(feature_bins: &[Bin], params: &Params) -> f64 {
    let (g, h) = feature_bins.iter().fold((0.0, 0.0), |(g, h), b| (g + b.g, h + b.h));
    -params.learning_rate * g / (h + params.lambda)
}

pub(super) fn best_split(bins: &Binning, histogram: &[Bin], params: &Params) -> Option<Candidate> {
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

pub(super) fn score(g: f64, h: f64, lambda: f64) -> f64 {
    g * g / (h + lambda)
}

pub(super) fn allowed(left: &Bin, right: &Bin, params: &Params) -> bool {
    left.n as usize >= params.min_data_in_leaf
        && right.n as usize >= params.min_data_in_leaf
        && left.h >= params.min_hessian_in_leaf
        && right.h >= params.min_hessian_in_leaf
}

pub(super) fn total(bins: &[Bin]) -> Bin {
    bins.iter().fold(Bin::default(), |t, b| Bin { g: t.g + b.g, h: t.h + b.h, n: t.n + b.n })
}

pub(super) fn numeric_split(feature: usize, uppers: &[f64], part: &[Bin], params: &Params) -> Option<Candidate> {
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

pub(super) fn categorical_split(feature: usize, part: &[Bin], params: &Params) -> Option<Candidate> {
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
