//! LightGBM text models (`model.txt`), so a team can bring a binary classifier trained in
//! Python. Trees are evaluated exactly as LightGBM's own `NumericalDecision` and
//! `CategoricalDecision` do; categorical features read a lead's text through the category
//! lists pandas stored in the file (`pandas_categorical`).

use serde::{Deserialize, Serialize};

use crate::schema::{Feature, Kind, Schema};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LightGbm {
    /// LightGBM's `sigmoid:` parameter of the binary objective.
    pub sigmoid: f64,
    pub trees: Vec<LgbTree>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LgbTree {
    pub split_feature: Vec<usize>,
    pub threshold: Vec<f64>,
    pub decision_type: Vec<u8>,
    /// Non-negative: an internal node; negative: `!leaf`.
    pub left_child: Vec<i32>,
    pub right_child: Vec<i32>,
    pub leaf_value: Vec<f64>,
    /// Each internal node's expected output, for contributions.
    pub internal_value: Vec<f64>,
    pub cat_boundaries: Vec<usize>,
    pub cat_threshold: Vec<u32>,
}

const CATEGORICAL: u8 = 1;
const DEFAULT_LEFT: u8 = 2;
const MISSING_ZERO: u8 = 1;
const MISSING_NAN: u8 = 2;
/// LightGBM's `kZeroThreshold`.
const ZERO: f64 = 1e-35;

impl LgbTree {
    fn go_left(&self, node: usize, x: f64) -> bool {
        let decision = self.decision_type[node];
        if decision & CATEGORICAL != 0 {
            // A missing or negative category always goes right.
            if x.is_nan() || x < 0.0 {
                return false;
            }
            let category = x as u32;
            let index = self.threshold[node] as usize;
            let words = &self.cat_threshold[self.cat_boundaries[index]..self.cat_boundaries[index + 1]];
            let word = (category / 32) as usize;
            return word < words.len() && (words[word] >> (category % 32)) & 1 == 1;
        }
        let missing = (decision >> 2) & 3;
        let mut x = x;
        if x.is_nan() && missing != MISSING_NAN {
            x = 0.0;
        }
        if (missing == MISSING_ZERO && x.abs() <= ZERO) || (missing == MISSING_NAN && x.is_nan()) {
            return decision & DEFAULT_LEFT != 0;
        }
        x <= self.threshold[node]
    }

    /// The leaf a row reaches, and the internal nodes on the way.
    fn path(&self, row: &[f64]) -> (usize, Vec<usize>) {
        if self.left_child.is_empty() {
            return (0, Vec::new());
        }
        let mut node = 0usize;
        let mut path = Vec::new();
        loop {
            path.push(node);
            let x = row.get(self.split_feature[node]).copied().unwrap_or(f64::NAN);
            let next = if self.go_left(node, x) { self.left_child[node] } else { self.right_child[node] };
            if next < 0 {
                return (!next as usize, path);
            }
            node = next as usize;
        }
    }

    pub fn predict(&self, row: &[f64]) -> f64 {
        if self.left_child.is_empty() {
            return self.leaf_value[0];
        }
        let mut node = 0usize;
        loop {
            let x = row.get(self.split_feature[node]).copied().unwrap_or(f64::NAN);
            let next = if self.go_left(node, x) { self.left_child[node] } else { self.right_child[node] };
            if next < 0 {
                return self.leaf_value[!next as usize];
            }
            node = next as usize;
        }
    }
}

impl LightGbm {
    pub fn logit(&self, row: &[f64]) -> f64 {
        self.trees.iter().map(|t| t.predict(row)).sum()
    }

    /// The raw scores of many rows, tree by tree (see `Gbdt::logits`).
    pub fn logits(&self, rows: &[Vec<f64>], out: &mut [f64]) {
        out.fill(0.0);
        for tree in &self.trees {
            for (row, z) in rows.iter().zip(out.iter_mut()) {
                *z += tree.predict(row);
            }
        }
    }

    /// How many splits use each feature.
    pub fn split_counts(&self, features: usize) -> Vec<f64> {
        let mut counts = vec![0.0; features];
        for feature in self.trees.iter().flat_map(|t| &t.split_feature) {
            if let Some(count) = counts.get_mut(*feature) {
                *count += 1.0;
            }
        }
        counts
    }

    /// Saabas contributions from the internal values along each path; with the bias they add up
    /// to the raw score.
    pub fn contributions(&self, row: &[f64], features: usize) -> (f64, Vec<f64>) {
        let mut parts = vec![0.0; features];
        let mut bias = 0.0;
        for tree in &self.trees {
            let (leaf, path) = tree.path(row);
            let Some(&root) = path.first() else {
                bias += tree.leaf_value[leaf];
                continue;
            };
            bias += tree.internal_value[root];
            for (i, &node) in path.iter().enumerate() {
                let next = path.get(i + 1).map_or(tree.leaf_value[leaf], |&n| tree.internal_value[n]);
                if let Some(part) = parts.get_mut(tree.split_feature[node]) {
                    *part += next - tree.internal_value[node];
                }
            }
        }
        (bias, parts)
    }
}

/// Parses a LightGBM text model of a binary classifier into its schema and trees.
pub fn parse(text: &str) -> Result<(Schema, LightGbm), String> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("tree") {
        return Err("a LightGBM text model starts with the line \"tree\"".into());
    }
    let header = key_values(text.split("\nTree=").next().unwrap_or(""));
    let get = |key: &str| header.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let objective = get("objective").ok_or("no objective line")?;
    if !objective.starts_with("binary") {
        return Err(format!("objective {objective:?}: only binary classifiers score leads"));
    }
    let sigmoid = objective
        .split_whitespace()
        .find_map(|part| part.strip_prefix("sigmoid:"))
        .map_or(Ok(1.0), |s| s.parse::<f64>().map_err(|e| format!("sigmoid: {e}")))?;
    let names: Vec<String> =
        get("feature_names").ok_or("no feature_names line")?.split(' ').map(String::from).collect();
    // A complete file lists its trees' sizes, ends them with a marker, then its parameters,
    // and pandas' category lists last: a file cut short misses one of them.
    let sizes = get("tree_sizes").ok_or("no tree_sizes line in the header")?.split(' ').count();
    let (body, tail) = text
        .split_once("\nend of trees")
        .ok_or("no \"end of trees\" line: the file is cut short (LightGBM writes it after the last tree)")?;
    let parameters: Vec<(&str, &str)> = tail
        .lines()
        .filter_map(|line| line.trim().strip_prefix('[')?.strip_suffix(']')?.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let parameter = |key: &str| parameters.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    if !tail.lines().any(|l| l.starts_with("pandas_categorical:")) {
        return Err("no pandas_categorical line: the file is cut short (LightGBM writes it last)".into());
    }
    if matches!(parameter("linear_tree"), Some("1" | "true")) {
        return Err("linear trees (linear_tree=True) are not supported: retrain without linear_tree".into());
    }

    let mut trees = Vec::new();
    for block in body.split("\nTree=").skip(1) {
        let fields = key_values(block);
        let field = |key: &str| fields.iter().find(|(k, _)| *k == key).map_or("", |(_, v)| *v);
        let numbers = |key: &str| -> Result<Vec<f64>, String> {
            let value = field(key);
            if value.is_empty() {
                return Ok(Vec::new());
            }
            value.split(' ').map(|n| n.parse::<f64>().map_err(|e| format!("tree {key}: {e}"))).collect()
        };
        let integers = |key: &str| -> Result<Vec<i64>, String> {
            let value = field(key);
            if value.is_empty() {
                return Ok(Vec::new());
            }
            value.split(' ').map(|n| n.parse::<i64>().map_err(|e| format!("tree {key}: {e}"))).collect()
        };
        if matches!(field("is_linear"), "1") {
            return Err(format!("tree {} is linear (linear_tree=True), which is not supported", trees.len()));
        }
        let tree = LgbTree {
            split_feature: integers("split_feature")?.into_iter().map(|f| f as usize).collect(),
            threshold: numbers("threshold")?,
            decision_type: integers("decision_type")?.into_iter().map(|d| d as u8).collect(),
            left_child: integers("left_child")?.into_iter().map(|c| c as i32).collect(),
            right_child: integers("right_child")?.into_iter().map(|c| c as i32).collect(),
            leaf_value: numbers("leaf_value")?,
            internal_value: numbers("internal_value")?,
            cat_boundaries: integers("cat_boundaries")?.into_iter().map(|c| c as usize).collect(),
            cat_threshold: integers("cat_threshold")?.into_iter().map(|c| c as u32).collect(),
        };
        let internal = tree.split_feature.len();
        let consistent = tree.threshold.len() == internal
            && tree.decision_type.len() == internal
            && tree.left_child.len() == internal
            && tree.right_child.len() == internal
            && tree.leaf_value.len() == internal + 1
            && (tree.internal_value.len() == internal || internal == 0)
            && tree.split_feature.iter().all(|f| *f < names.len());
        if !consistent {
            return Err(format!("tree {} is inconsistent (array lengths or feature indices)", trees.len()));
        }
        let categories = tree.cat_boundaries.len().saturating_sub(1);
        let bounded = tree.cat_boundaries.windows(2).all(|w| w[0] <= w[1])
            && tree.cat_boundaries.last().is_none_or(|last| *last == tree.cat_threshold.len())
            && tree
                .decision_type
                .iter()
                .zip(&tree.threshold)
                .filter(|(d, _)| *d & CATEGORICAL != 0)
                .all(|(_, t)| (*t as usize) < categories);
        if !bounded {
            return Err(format!(
                "tree {}: its category sets (cat_boundaries, cat_threshold) do not hold together",
                trees.len()
            ));
        }
        trees.push(tree);
    }
    if trees.is_empty() {
        return Err("no trees".into());
    }
    if trees.len() != sizes {
        return Err(format!(
            "the header lists {sizes} trees (tree_sizes) and the file holds {}: it is cut short",
            trees.len()
        ));
    }

    // pandas stores the categories of each of its category columns, in column order: the
    // columns LightGBM's `categorical_feature` parameter lists, used or not.
    let pandas: Vec<Vec<serde_json::Value>> = match tail.lines().find_map(|l| l.strip_prefix("pandas_categorical:")) {
        Some(json) if json.trim() != "null" => {
            serde_json::from_str(json.trim()).map_err(|e| format!("pandas_categorical: {e}"))?
        }
        _ => Vec::new(),
    };
    let categorical: Vec<usize> = match parameter("categorical_feature") {
        Some(list) if !list.is_empty() => list
            .split(',')
            .map(|i| i.trim().parse::<usize>().map_err(|_| format!("categorical_feature: {i:?} is not a column index")))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    if !pandas.is_empty() && pandas.len() != categorical.len() {
        return Err(format!(
            "pandas stored {} category lists and categorical_feature names {} columns: which list is whose cannot \
             be told; give every categorical column pandas' category dtype, or none",
            pandas.len(),
            categorical.len()
        ));
    }
    let features = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            // Without pandas' category lists, a categorical feature takes the integer codes
            // LightGBM was trained on, as numbers.
            let categories = categorical.iter().position(|c| *c == i).and_then(|k| pandas.get(k));
            let kind = match categories {
                Some(values) => Kind::Categorical {
                    categories: values.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), String::from)).collect(),
                    pandas: true,
                },
                None => Kind::Numeric,
            };
            Feature { name: name.clone(), kind }
        })
        .collect();
    Ok((Schema { features }, LightGbm { sigmoid, trees }))
}

fn key_values(block: &str) -> Vec<(&str, &str)> {
    block.lines().filter_map(|line| line.split_once('=')).map(|(k, v)| (k.trim(), v.trim())).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::model::ModelFile;
    use crate::schema::{Kind, Value};

    /// Scores a fixture's rows with the model loaded from its text file; each row holds the
    /// probability LightGBM itself gave (fixtures/make_lightgbm.py).
    fn check(name: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let model = ModelFile::load(&dir.join(format!("lightgbm_{name}.txt"))).unwrap();
        assert!(
            matches!(&model.schema.features[4].kind, Kind::Categorical { categories, .. } if categories.len() == 6)
        );
        let mut reader = csv::Reader::from_path(dir.join(format!("lightgbm_{name}.csv"))).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        let features: Vec<Option<usize>> = header.iter().map(|h| model.schema.position(h)).collect();
        assert_eq!(features[0], Some(0), "\"visit count\" reads LightGBM's visit_count");
        let mut rows = 0;
        for record in reader.records() {
            let record = record.unwrap();
            let mut row = vec![f64::NAN; model.schema.features.len()];
            for (cell, feature) in record.iter().zip(&features) {
                if let Some(f) = feature {
                    row[*f] = model.schema.features[*f].encode(Value::Text(cell));
                }
            }
            let expected: f64 = record[header.len() - 1].parse().unwrap();
            let ours = model.probability(&row);
            assert!((ours - expected).abs() < 1e-12, "{name} row {rows}: ours {ours}, LightGBM {expected}");
            let (base, parts) = model.explain(&row);
            let total = base + parts.iter().map(|c| c.points).sum::<f64>();
            assert!((total - 100.0 * ours).abs() < 1e-9);
            rows += 1;
        }
        assert_eq!(rows, 200);
    }

    #[test]
    fn scores_match_lightgbm_with_missing_values_as_nan() {
        check("nan");
    }

    #[test]
    fn scores_match_lightgbm_with_zero_as_missing() {
        check("zero");
    }

    #[test]
    fn other_objectives_and_broken_files_are_refused() {
        assert!(super::parse("tree\nobjective=regression\nfeature_names=a\n").unwrap_err().contains("only binary"));
        assert!(super::parse("not a model").unwrap_err().contains("starts with the line"));
        let broken = "tree\nobjective=binary sigmoid:1\nfeature_names=a\ntree_sizes=100\n\nTree=0\nsplit_feature=3\n\
                      threshold=1\ndecision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=0.1 0.2\n\
                      internal_value=0\n\nend of trees\n\npandas_categorical:null\n";
        assert!(super::parse(broken).unwrap_err().contains("tree 0 is inconsistent"));
        let unended = broken.split("\nend of trees").next().unwrap();
        assert!(super::parse(unended).unwrap_err().contains("no \"end of trees\" line"));
        let no_pandas = broken.split("pandas_categorical").next().unwrap();
        assert!(super::parse(no_pandas).unwrap_err().contains("no pandas_categorical line"));
    }
}
