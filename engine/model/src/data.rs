//! Reading a training table: a CSV file with a binary target column. Cells are kept as text
//! (missing and placeholder values as `None`) until the schema decides each column's type.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Cell values that mean "no value": empty, and the placeholders forms and exports use
/// ("Select" is a drop-down left at its prompt).
const MISSING: &[&str] = &["", "select", "na", "n/a", "nan", "null", "none", "-"];

/// Pairs of target values understood without `--positive`; the second is the positive one.
const TARGET_PAIRS: &[(&str, &str)] = &[("0", "1"), ("false", "true"), ("no", "yes"), ("n", "y")];

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Csv { path: PathBuf, message: String },
    #[error("{path}: no rows after the header")]
    Empty { path: PathBuf },
    #[error("{path}: target column {target:?} is not in the header; columns: {columns}")]
    NoTarget { path: PathBuf, target: String, columns: String },
    #[error("{path}: --drop names column {column:?}, which is not in the header")]
    NoDropColumn { path: PathBuf, column: String },
    #[error("{path}: line {line}: target column {target:?} is empty")]
    MissingTarget { path: PathBuf, line: u64, target: String },
    #[error("{path}: target column {target:?} has {count} different values ({values}); it must have two")]
    NotBinary { path: PathBuf, target: String, count: usize, values: String },
    #[error("{path}: target column {target:?} has only one class ({value:?}); training needs both")]
    OneClass { path: PathBuf, target: String, value: String },
    #[error("{path}: target column {target:?} has values {a:?} and {b:?}; say which one is positive with --positive")]
    AmbiguousPositive { path: PathBuf, target: String, a: String, b: String },
    #[error("{path}: --positive {positive:?} is not a value of target column {target:?} ({a:?}, {b:?})")]
    UnknownPositive { path: PathBuf, target: String, positive: String, a: String, b: String },
    #[error("{path}: its header differs from the training file's: {detail}")]
    HeaderMismatch { path: PathBuf, detail: String },
}

/// How to read a table.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    pub target: String,
    pub drop: Vec<String>,
    pub delimiter: u8,
    /// The target value that counts as positive; needed only when the values are not a pair
    /// such as 0/1, true/false or yes/no.
    pub positive: Option<String>,
}

/// A table's feature columns (cells as text, missing as `None`) and its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub names: Vec<String>,
    /// Column-major: `columns[c][row]`.
    pub columns: Vec<Vec<Option<String>>>,
    pub target: Vec<bool>,
    /// The target value read as positive.
    pub positive: String,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.target.len()
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Table {
        Table {
            names: self.names.clone(),
            columns: self.columns.iter().map(|column| indices.iter().map(|&i| column[i].clone()).collect()).collect(),
            target: indices.iter().map(|&i| self.target[i]).collect(),
            positive: self.positive.clone(),
        }
    }
}

/// Row indices split per class: about `fraction` of each class in the second list. Both lists
/// come back in ascending order.
pub fn stratified(target: &[bool], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for class in [false, true] {
        let mut rows: Vec<usize> = (0..target.len()).filter(|&i| target[i] == class).collect();
        rows.shuffle(&mut rng);
        let cut = (rows.len() as f64 * fraction).round() as usize;
        second.extend_from_slice(&rows[..cut]);
        first.extend_from_slice(&rows[cut..]);
    }
    first.sort_unstable();
    second.sort_unstable();
    (first, second)
}

/// Whether a cell means "no value".
pub fn is_missing(cell: &str) -> bool {
    let cell = cell.trim();
    MISSING.iter().any(|m| cell.eq_ignore_ascii_case(m))
}

/// Reads a CSV file with a header row. `like` (a training table) makes a test file's target
/// read the same way and checks that it has the same columns.
pub fn read_csv(path: &Path, options: &ReadOptions, like: Option<&Table>) -> Result<Table, DataError> {
    let csv_error = |e: csv::Error| DataError::Csv { path: path.to_owned(), message: csv_message(&e) };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io { path: path.to_owned(), source })?;
    let mut reader = csv::ReaderBuilder::new().delimiter(options.delimiter).from_reader(std::io::BufReader::new(file));
    let header: Vec<String> = reader.headers().map_err(csv_error)?.iter().map(|h| h.trim().to_string()).collect();
    let Some(target_index) = header.iter().position(|h| *h == options.target) else {
        return Err(DataError::NoTarget {
            path: path.to_owned(),
            target: options.target.clone(),
            columns: header.join(", "),
        });
    };
    if let Some(column) = options.drop.iter().find(|d| !header.contains(d)) {
        return Err(DataError::NoDropColumn { path: path.to_owned(), column: column.clone() });
    }
    let kept: Vec<usize> =
        (0..header.len()).filter(|&i| i != target_index && !options.drop.contains(&header[i])).collect();
    let names: Vec<String> = kept.iter().map(|&i| header[i].clone()).collect();
    if let Some(like) = like
        && like.names != names
    {
        let detail = format!("expected {} feature columns, found {}", like.names.len(), names.len());
        return Err(DataError::HeaderMismatch { path: path.to_owned(), detail });
    }

    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); kept.len()];
    let mut raw_target = Vec::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, |p| p.line());
        let value = record.get(target_index).unwrap_or("").trim();
        if value.is_empty() {
            return Err(DataError::MissingTarget { path: path.to_owned(), line, target: options.target.clone() });
        }
        raw_target.push(value.to_string());
        for (column, &i) in columns.iter_mut().zip(&kept) {
            let cell = record.get(i).unwrap_or("");
            column.push((!is_missing(cell)).then(|| cell.trim().to_string()));
        }
    }
    if raw_target.is_empty() {
        return Err(DataError::Empty { path: path.to_owned() });
    }
    let positive = match like {
        Some(like) => like.positive.clone(),
        None => positive_value(path, &options.target, &raw_target, options.positive.as_deref())?,
    };
    let target = raw_target.iter().map(|v| v.eq_ignore_ascii_case(&positive)).collect();
    Ok(Table { names, columns, target, positive })
}

/// Which target value is positive, checking that there are exactly two.
fn positive_value(path: &Path, target: &str, values: &[String], positive: Option<&str>) -> Result<String, DataError> {
    let mut distinct: Vec<String> = Vec::new();
    for value in values {
        if !distinct.iter().any(|d| d.eq_ignore_ascii_case(value)) {
            distinct.push(value.clone());
        }
    }
    distinct.sort();
    let path = path.to_owned();
    let target = target.to_string();
    match distinct.len() {
        1 => Err(DataError::OneClass { path, target, value: distinct.remove(0) }),
        2 => {
            let (a, b) = (distinct[0].clone(), distinct[1].clone());
            if let Some(positive) = positive {
                return match distinct.iter().find(|d| d.eq_ignore_ascii_case(positive)) {
                    Some(found) => Ok(found.clone()),
                    None => Err(DataError::UnknownPositive { path, target, positive: positive.into(), a, b }),
                };
            }
            let is = |value: &str, word: &str| value.eq_ignore_ascii_case(word);
            let pair =
                TARGET_PAIRS.iter().find(|(neg, pos)| (is(&a, neg) && is(&b, pos)) || (is(&a, pos) && is(&b, neg)));
            match pair {
                Some((_, pos)) => Ok(if is(&a, pos) { a } else { b }),
                None => Err(DataError::AmbiguousPositive { path, target, a, b }),
            }
        }
        count => {
            let shown: Vec<&str> = distinct.iter().take(5).map(String::as_str).collect();
            Err(DataError::NotBinary { path, target, count, values: shown.join(", ") })
        }
    }
}

/// The csv crate's errors, with the line number in front where it has one.
fn csv_message(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => {
            let line = pos.as_ref().map_or(0, |p| p.line());
            format!("line {line} has {len} fields, the header has {expected_len}")
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, options: &ReadOptions) -> Result<Table, DataError> {
        let dir = std::env::temp_dir().join(format!("leadscore-model-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.csv", text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()));
        std::fs::write(&path, text).unwrap();
        read_csv(&path, options, None)
    }

    fn options(target: &str) -> ReadOptions {
        ReadOptions { target: target.into(), drop: vec![], delimiter: b',', positive: None }
    }

    #[test]
    fn reads_cells_with_placeholders_as_missing() {
        let table = read(
            "id,city,won\n1,Select,yes\n2,Pune,no\n3, ,yes\n",
            &ReadOptions { drop: vec!["id".into()], ..options("won") },
        )
        .unwrap();
        assert_eq!(table.names, ["city"]);
        assert_eq!(table.columns[0], [None, Some("Pune".to_string()), None]);
        assert_eq!(table.target, [true, false, true]);
    }

    #[test]
    fn bad_input_names_the_column_or_line() {
        let error = |text: &str, options: ReadOptions| read(text, &options).unwrap_err().to_string();
        assert!(
            error("a,b\n1,2\n", options("won")).contains("target column \"won\" is not in the header; columns: a, b")
        );
        assert!(error("a,won\n", options("won")).ends_with("no rows after the header"));
        assert!(error("a,won\n1,0\n2,0\n", options("won")).contains("has only one class (\"0\")"));
        assert!(error("a,won\n1,0\n2,1\n3\n", options("won")).contains("line 4 has 1 fields, the header has 2"));
        assert!(error("a,won\n1,0\n2,\n", options("won")).contains("line 3: target column \"won\" is empty"));
        assert!(error("a,won\n1,x\n2,y\n", options("won")).contains("say which one is positive with --positive"));
        assert!(error("a,won\n1,x\n2,y\n3,z\n", options("won")).contains("has 3 different values (x, y, z)"));
        let drop = ReadOptions { drop: vec!["b".into()], ..options("won") };
        assert!(error("a,won\n1,0\n2,1\n", drop).contains("--drop names column \"b\""));
    }

    #[test]
    fn positive_values_are_understood_or_given() {
        let table = read("a,won\n1,True\n2,false\n", &options("won")).unwrap();
        assert_eq!(table.target, [true, false]);
        let table =
            read("a,outcome\n1,lost\n2,won\n", &ReadOptions { positive: Some("won".into()), ..options("outcome") })
                .unwrap();
        assert_eq!((table.target.as_slice(), table.positive.as_str()), ([false, true].as_slice(), "won"));
    }

    #[test]
    fn a_stratified_split_keeps_the_class_balance() {
        let target: Vec<bool> = (0..1000).map(|i| i % 4 == 0).collect();
        let (train, test) = stratified(&target, 0.2, 7);
        assert_eq!((train.len(), test.len()), (800, 200));
        assert_eq!(test.iter().filter(|&&i| target[i]).count(), 50);
        assert_eq!(stratified(&target, 0.2, 7), (train, test), "the same seed gives the same split");
    }
}
