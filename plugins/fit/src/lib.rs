//! The fit scorer: who the lead is, scored by a rule matrix over its attributes.
//!
//! Rules are grouped by attribute; within a group the first rule that matches gives its points
//! (so overlapping ranges are settled by order). The lead's points are the points won; its
//! score is those points normalised by the attainable maximum (the sum of each group's best
//! positive points) to 0-100.

use std::cell::RefCell;

use leadscore_plugin_api::{Batch, Factor, Lead, Scorer, Value, export_scorer};
use regex_automata::Input;
use regex_automata::meta::{Cache, Regex};
use serde::Deserialize;
use serde_json::Value as Json;
use thread_local::ThreadLocal;

/// The fit scorer's configuration: `{"rules": [...]}`; without rules, [`default_rules`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FitConfig {
    rules: Option<Vec<RuleConfig>>,
}

/// One rule as configured. Exactly one matcher is given: `equals`, `one_of`, `min`/`max`, or
/// `regex`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    attribute: String,
    points: f64,
    /// Shown in explanations; defaults to the matcher.
    label: Option<String>,
    /// How a match reads, `{value}` standing for the lead's value and `{attribute}` for the
    /// attribute's name: "{value} employees". Default "{attribute} {value}". The label follows
    /// in brackets when it says more than the value.
    text: Option<String>,
    equals: Option<Json>,
    one_of: Option<Vec<Json>>,
    min: Option<f64>,
    max: Option<f64>,
    regex: Option<String>,
}

#[derive(Debug)]
enum Matcher {
    /// Text compares trimmed and without regard to ASCII case; numbers and flags exactly.
    OneOf(Vec<Wanted>),
    /// Both bounds inclusive; text that parses as a number counts as that number.
    Range { min: f64, max: f64 },
    /// `slot` is its search cache's place among each thread's (`Fit::caches`).
    Regex { regex: Regex, slot: usize },
}

/// A value a rule looks for.
#[derive(Debug)]
enum Wanted {
    /// Trimmed.
    Text(String),
    Number(f64),
    Flag(bool),
}

#[derive(Debug)]
struct Rule {
    matcher: Matcher,
    points: f64,
    label: String,
    /// The configured text with `{attribute}` filled in, cut where the value goes: an
    /// explanation only joins the pieces.
    text: Vec<String>,
}

impl Rule {
    /// The match in plain words: "CTO (C-level)", "640 employees (500-999)", "IT department".
    fn describe(&self, value: &str) -> String {
        let mut text = self.text.join(value);
        if !self.label.is_empty() && !self.label.eq_ignore_ascii_case(value.trim()) {
            text.push_str(" (");
            text.push_str(&self.label);
            text.push(')');
        }
        text
    }
}

/// The rules of one attribute, in configured order.
#[derive(Debug)]
struct Group {
    attribute: String,
    rules: Vec<Rule>,
}

#[derive(Debug)]
pub struct Fit {
    groups: Vec<Group>,
    /// The attainable maximum: each group's best positive points, summed.
    max_points: f64,
    /// The rules' regexes, by slot.
    regexes: Vec<Regex>,
    /// Each calling thread's search caches, one per regex. A regex used through `regex::Regex`
    /// keeps its caches in a pool that only its first thread reaches without a lock; the
    /// engine's threads would each take that lock for every lead a rule looks at.
    caches: ThreadLocal<RefCell<Vec<Cache>>>,
}

/// One lead's matched rules: (group, rule) pairs.
type Matches = Vec<(usize, usize)>;

impl Fit {
    fn from_config(config: FitConfig) -> Result<Self, String> {
        let rules = config.rules.unwrap_or_else(default_rules);
        let (mut groups, mut regexes): (Vec<Group>, Vec<Regex>) = (Vec::new(), Vec::new());
        for (index, rule) in rules.into_iter().enumerate() {
            let rule_path = format!("rules[{index}]");
            let (attribute, rule) = compile(rule, &mut regexes).map_err(|e| format!("{rule_path}: {e}"))?;
            match groups.iter_mut().find(|g| g.attribute == attribute) {
                Some(group) => group.rules.push(rule),
                None => groups.push(Group { attribute, rules: vec![rule] }),
            }
        }
        let max_points: f64 = groups.iter().map(|g| g.rules.iter().map(|r| r.points).fold(0.0, f64::max)).sum();
        if max_points <= 0.0 {
            return Err("rules: at least one rule must give positive points, or no score is attainable".into());
        }
        Ok(Self { groups, max_points, regexes, caches: ThreadLocal::new() })
    }

    /// Runs `work` with this thread's search caches.
    fn with_caches<R>(&self, work: impl FnOnce(&mut [Cache]) -> R) -> R {
        let caches = self.caches.get_or(|| RefCell::new(self.regexes.iter().map(Regex::create_cache).collect()));
        work(&mut caches.borrow_mut())
    }

    /// Maps each attribute name of the batch to its group, once per batch.
    fn resolve(&self, batch: &Batch<'_>) -> Vec<Option<usize>> {
        batch.names().map(|name| self.groups.iter().position(|g| g.attribute == name)).collect()
    }

    fn matches(&self, lead: &Lead<'_>, groups: &[Option<usize>], found: &mut Matches, caches: &mut [Cache]) {
        found.clear();
        for attribute in lead.attributes() {
            let Some(&Some(group)) = groups.get(attribute.name() as usize) else { continue };
            if found.iter().any(|(g, _)| *g == group) {
                continue;
            }
            let value = attribute.value();
            if let Some(rule) = self.groups[group].rules.iter().position(|r| r.matcher.matches(value, caches)) {
                found.push((group, rule));
            }
        }
    }

    fn points_of(&self, found: &Matches) -> f64 {
        found.iter().map(|&(g, r)| self.groups[g].rules[r].points).sum()
    }

    fn score_of(&self, points: f64) -> f64 {
        (100.0 * points / self.max_points).clamp(0.0, 100.0)
    }

    /// The rules a lead matched, as factors: in points, or on the 0-100 scale.
    fn factors(&self, batch: &Batch<'_>, lead: usize, in_points: bool) -> Vec<Factor> {
        let groups = self.resolve(batch);
        let lead = batch.lead(lead);
        let mut found = Matches::new();
        self.with_caches(|caches| self.matches(&lead, &groups, &mut found, caches));
        let scale = if in_points { 1.0 } else { 100.0 / self.max_points };
        found
            .iter()
            .map(|&(g, r)| {
                let (group, rule) = (&self.groups[g], &self.groups[g].rules[r]);
                let value = lead
                    .attributes()
                    .find(|a| batch.name(a.name()) == group.attribute)
                    .map_or(String::new(), |a| show(a.value()));
                Factor {
                    feature: group.attribute.clone(),
                    contribution: scale * rule.points,
                    detail: rule.describe(&value),
                }
            })
            .collect()
    }
}

impl Scorer for Fit {
    const NAME: &'static str = "fit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ATTRIBUTES_ONLY: bool = true;

    fn create(config: &str) -> Result<Self, String> {
        let config: FitConfig = serde_json::from_str(config).map_err(|e| e.to_string())?;
        Self::from_config(config)
    }

    fn score(&self, batch: &Batch<'_>, scores: &mut [f64]) -> Result<(), String> {
        self.score_points(batch, scores, &mut vec![0.0; scores.len()])
    }

    fn score_points(&self, batch: &Batch<'_>, scores: &mut [f64], points: &mut [f64]) -> Result<(), String> {
        let groups = self.resolve(batch);
        let mut found = Matches::new();
        self.with_caches(|caches| {
            for ((lead, score), points) in batch.leads().zip(scores).zip(points) {
                self.matches(&lead, &groups, &mut found, caches);
                *points = self.points_of(&found);
                *score = self.score_of(*points);
            }
        });
        Ok(())
    }

    fn explain(&self, batch: &Batch<'_>, lead: usize) -> Result<Vec<Factor>, String> {
        let mut factors = self.factors(batch, lead, false);
        let raw: f64 = factors.iter().map(|f| f.contribution).sum();
        let clamped = raw.clamp(0.0, 100.0);
        if clamped != raw {
            let detail = format!("the score is kept within 0-100 (points gave {raw:.1})");
            factors.push(Factor { feature: "bounds".into(), contribution: clamped - raw, detail });
        }
        Ok(factors)
    }

    fn explain_points(&self, batch: &Batch<'_>, lead: usize) -> Result<Vec<Factor>, String> {
        Ok(self.factors(batch, lead, true))
    }
}

impl Matcher {
    fn matches(&self, value: Value<'_>, caches: &mut [Cache]) -> bool {
        match self {
            Matcher::OneOf(options) => options.iter().any(|option| option.equals(value)),
            Matcher::Range { min, max } => number(value).is_some_and(|n| (*min..=*max).contains(&n)),
            Matcher::Regex { regex, slot } => match value {
                Value::Text(text) => {
                    regex.search_half_with(&mut caches[*slot], &Input::new(text).earliest(true)).is_some()
                }
                _ => false,
            },
        }
    }
}

impl Wanted {
    fn from_json(value: &Json) -> Result<Self, String> {
        match value {
            Json::String(text) => Ok(Wanted::Text(text.trim().to_string())),
            Json::Number(n) => {
                n.as_f64().map(Wanted::Number).ok_or_else(|| format!("{n} is not a number we can compare"))
            }
            Json::Bool(flag) => Ok(Wanted::Flag(*flag)),
            other => Err(format!("values must be text, numbers or true/false, got {other}")),
        }
    }

    fn equals(&self, value: Value<'_>) -> bool {
        match (self, value) {
            (Wanted::Text(want), Value::Text(text)) => want.eq_ignore_ascii_case(text.trim_ascii()),
            (Wanted::Number(want), _) => number(value) == Some(*want),
            (Wanted::Flag(want), Value::Flag(flag)) => *want == flag,
            _ => false,
        }
    }
}

fn number(value: Value<'_>) -> Option<f64> {
    match value {
        Value::Number(n) => Some(n),
        Value::Text(text) => text.trim_ascii().parse().ok(),
        Value::Flag(_) => None,
    }
}

fn show(value: Value<'_>) -> String {
    match value {
        Value::Text(text) => text.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Flag(flag) => flag.to_string(),
    }
}

/// A configured rule, its regex (if any) added to `regexes`.
fn compile(rule: RuleConfig, regexes: &mut Vec<Regex>) -> Result<(String, Rule), String> {
    if rule.attribute.is_empty() {
        return Err("attribute must not be empty".into());
    }
    if !rule.points.is_finite() {
        return Err(format!("points must be a finite number, got {}", rule.points));
    }
    let ranged = rule.min.is_some() || rule.max.is_some();
    let given = [rule.equals.is_some(), rule.one_of.is_some(), ranged, rule.regex.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err("give exactly one matcher: equals, one_of, min/max or regex".into());
    }
    let wanted = |options: &[Json]| options.iter().map(Wanted::from_json).collect::<Result<Vec<_>, _>>();
    let (matcher, default_label) = if let Some(option) = rule.equals {
        (Matcher::OneOf(wanted(std::slice::from_ref(&option))?), option_label(&option))
    } else if let Some(options) = rule.one_of {
        if options.is_empty() {
            return Err("one_of must list at least one value".into());
        }
        let label = options.iter().map(option_label).collect::<Vec<_>>().join(" | ");
        (Matcher::OneOf(wanted(&options)?), label)
    } else if ranged {
        let (min, max) = (rule.min.unwrap_or(f64::NEG_INFINITY), rule.max.unwrap_or(f64::INFINITY));
        if min.is_nan() || max.is_nan() || min > max {
            return Err(format!("min must not exceed max, got {min}-{max}"));
        }
        let label = match (rule.min, rule.max) {
            (Some(min), Some(max)) => format!("{min}-{max}"),
            (Some(min), None) => format!("{min}+"),
            _ => format!("up to {max}"),
        };
        (Matcher::Range { min, max }, label)
    } else {
        let pattern = rule.regex.unwrap_or_default();
        let regex = Regex::new(&pattern).map_err(|e| match e.syntax_error() {
            Some(syntax) => format!("regex: {syntax}"),
            None => format!("regex: {e}"),
        })?;
        regexes.push(regex.clone());
        (Matcher::Regex { regex, slot: regexes.len() - 1 }, format!("/{pattern}/"))
    };
    let text = rule.text.as_deref().unwrap_or("{attribute} {value}").replace("{attribute}", &rule.attribute);
    let text = text.split("{value}").map(str::to_owned).collect();
    Ok((rule.attribute, Rule { matcher, points: rule.points, label: rule.label.unwrap_or(default_label), text }))
}

fn option_label(option: &Json) -> String {
    option.as_str().map_or_else(|| option.to_string(), str::to_string)
}

/// The default matrix: role, department and company size.
fn default_rules() -> Vec<RuleConfig> {
    // Each reads as a person would say it: "CTO", "IT department", "640 employees".
    let text = |attribute: &str| match attribute {
        "role" => "{value}",
        "department" => "{value} department",
        _ => "{value} employees",
    };
    let rule = |attribute: &str, points: f64, label: &str| RuleConfig {
        attribute: attribute.into(),
        points,
        label: Some(label.into()),
        text: Some(text(attribute).into()),
        equals: None,
        one_of: None,
        min: None,
        max: None,
        regex: None,
    };
    let one_of = |attribute, points, label, values: &[&str]| RuleConfig {
        one_of: Some(values.iter().map(|v| Json::String(v.to_string())).collect()),
        ..rule(attribute, points, label)
    };
    let range = |points, label, min: f64, max: Option<f64>| RuleConfig {
        min: Some(min),
        max,
        ..rule("employees", points, label)
    };
    vec![
        RuleConfig {
            regex: Some(r"(?i-u)^\s*(c-level\s*$|c[a-z]{1,2}o\s*$|chief\b)".into()),
            ..rule("role", 15.0, "C-level")
        },
        one_of("role", 10.0, "project manager", &["project manager"]),
        RuleConfig { regex: Some(r"(?i-u)\bdirector\b".into()), ..rule("role", 10.0, "director") },
        RuleConfig { regex: Some(r"(?i-u)\bassistant\b".into()), ..rule("role", 0.0, "assistant") },
        one_of("department", 15.0, "IT", &["IT", "information technology"]),
        one_of("department", 10.0, "finance", &["finance"]),
        one_of("department", 0.0, "marketing", &["marketing"]),
        range(15.0, "500-999", 500.0, Some(999.0)),
        range(10.0, "100-499", 100.0, Some(499.0)),
        range(5.0, "1000+", 1000.0, None),
        range(5.0, "50-99", 50.0, Some(99.0)),
        range(0.0, "1-50", 1.0, Some(50.0)),
    ]
}

export_scorer!(Fit);

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_plugin_api::BatchBuf;

    /// Scores leads given as attribute lists with the default matrix, or `config` if given.
    fn scores(config: &str, leads: &[&[(&str, Value<'_>)]]) -> Vec<f64> {
        let fit = Fit::create(config).unwrap();
        let buf = batch(leads);
        let mut out = vec![f64::NAN; leads.len()];
        fit.score(&buf.view(), &mut out).unwrap();
        out
    }

    /// A batch with its name table first, as the host builds it.
    fn batch(leads: &[&[(&str, Value<'_>)]]) -> BatchBuf {
        let mut names: Vec<&str> = leads.iter().flat_map(|lead| lead.iter().map(|(name, _)| *name)).collect();
        names.sort_unstable();
        names.dedup();
        let mut buf = BatchBuf::new(0);
        for name in &names {
            buf.push_name(name);
        }
        for (i, lead) in leads.iter().enumerate() {
            buf.begin_lead(&format!("lead-{i}"), 0);
            for (name, value) in lead.iter() {
                buf.attribute(names.binary_search(name).unwrap() as u32, *value);
            }
        }
        buf
    }

    const MAX: f64 = 45.0;

    #[test]
    fn the_default_matrix_gives_its_points() {
        let role = |r| [("role", Value::Text(r))];
        let department = |d| [("department", Value::Text(d))];
        let employees = |n| [("employees", Value::Number(n))];
        let cases: Vec<(Vec<(&str, Value<'_>)>, f64)> = vec![
            (role("CEO").to_vec(), 15.0),
            (role("C-level").to_vec(), 15.0),
            (role("Chief Revenue Officer").to_vec(), 15.0),
            (role("Project Manager").to_vec(), 10.0),
            (role("Sales Director").to_vec(), 10.0),
            (role("Executive Assistant").to_vec(), 0.0),
            (department("IT").to_vec(), 15.0),
            (department("finance").to_vec(), 10.0),
            (department("Marketing").to_vec(), 0.0),
            (employees(750.0).to_vec(), 15.0),
            (employees(100.0).to_vec(), 10.0),
            (employees(499.0).to_vec(), 10.0),
            (employees(1000.0).to_vec(), 5.0),
            (employees(50.0).to_vec(), 5.0),
            (employees(12.0).to_vec(), 0.0),
            (vec![("employees", Value::Text("640"))], 15.0),
        ];
        let leads: Vec<&[(&str, Value<'_>)]> = cases.iter().map(|(lead, _)| lead.as_slice()).collect();
        let got = scores("{}", &leads);
        for ((lead, points), score) in cases.iter().zip(got) {
            assert!((score - 100.0 * points / MAX).abs() < 1e-9, "{lead:?}: {score}");
        }
    }

    #[test]
    fn regex_rules_match_alike_from_every_thread() {
        // One instance, as the engine shares it: each thread searches with caches of its own.
        let fit = Fit::create("{}").unwrap();
        let roles = ["CEO", "Sales Director", "Executive Assistant", "Clerk", "chief of staff"];
        let leads: Vec<[(&str, Value<'_>); 1]> = roles.iter().map(|r| [("role", Value::Text(r))]).collect();
        let buf = batch(&leads.iter().map(|l| l.as_slice()).collect::<Vec<_>>());
        let score = |fit: &Fit| {
            let mut out = vec![f64::NAN; roles.len()];
            fit.score(&buf.view(), &mut out).unwrap();
            out
        };
        let expected: Vec<f64> = [15.0, 10.0, 0.0, 0.0, 15.0].iter().map(|p| 100.0 * p / MAX).collect();
        std::thread::scope(|scope| {
            let threads: Vec<_> =
                (0..4).map(|_| scope.spawn(|| (0..50).map(|_| score(&fit)).collect::<Vec<_>>())).collect();
            for thread in threads {
                assert!(thread.join().unwrap().iter().all(|got| *got == expected));
            }
        });
        assert_eq!(score(&fit), expected);
    }

    #[test]
    fn the_best_lead_scores_100_and_points_add_across_attributes() {
        let best =
            [("role", Value::Text("CTO")), ("department", Value::Text("IT")), ("employees", Value::Number(640.0))];
        let middling = [("role", Value::Text("Project Manager")), ("department", Value::Text("Finance"))];
        let unknown = [("country", Value::Text("India"))];
        assert_eq!(scores("{}", &[&best, &middling, &unknown, &[]]), [100.0, 100.0 * 20.0 / MAX, 0.0, 0.0]);
    }

    #[test]
    fn negative_rules_subtract_and_the_score_stays_within_bounds() {
        let config = r#"{"rules": [
            {"attribute": "role", "equals": "CTO", "points": 10},
            {"attribute": "email_domain", "one_of": ["gmail.com", "yahoo.com"], "points": -5},
            {"attribute": "student", "equals": true, "points": -20}
        ]}"#;
        let cto_gmail = [("role", Value::Text("cto")), ("email_domain", Value::Text("gmail.com"))];
        let student = [("student", Value::Flag(true))];
        assert_eq!(scores(config, &[&cto_gmail, &student]), [50.0, 0.0]);

        let fit = Fit::create(config).unwrap();
        let buf = batch(&[&student]);
        let factors = fit.explain(&buf.view(), 0).unwrap();
        assert_eq!(factors.iter().map(|f| f.contribution).sum::<f64>(), 0.0, "{factors:?}");
    }

    #[test]
    fn points_are_the_rule_points_unbounded_and_explained_in_points() {
        let config = r#"{"rules": [
            {"attribute": "role", "equals": "CTO", "points": 10},
            {"attribute": "student", "equals": true, "points": -20}
        ]}"#;
        let fit = Fit::create(config).unwrap();
        let cto = [("role", Value::Text("CTO"))];
        let student = [("student", Value::Flag(true))];
        let buf = batch(&[&cto, &student]);
        let (mut scores, mut points) = ([0.0; 2], [0.0; 2]);
        fit.score_points(&buf.view(), &mut scores, &mut points).unwrap();
        assert_eq!((scores, points), ([100.0, 0.0], [10.0, -20.0]));
        let factors = fit.explain_points(&buf.view(), 1).unwrap();
        assert_eq!(factors.iter().map(|f| f.contribution).collect::<Vec<_>>(), [-20.0], "{factors:?}");
    }

    #[test]
    fn explanations_add_up_to_the_score() {
        let lead = [("role", Value::Text("Director")), ("employees", Value::Number(150.0))];
        let fit = Fit::create("{}").unwrap();
        let buf = batch(&[&lead]);
        let factors = fit.explain(&buf.view(), 0).unwrap();
        let total: f64 = factors.iter().map(|f| f.contribution).sum();
        assert!((total - scores("{}", &[&lead])[0]).abs() < 1e-9);
        // In plain words; the label only where it says more than the value.
        assert_eq!(factors[0].detail, "Director");
        assert_eq!(factors[1].detail, "150 employees (100-499)");
        // A rule says how it reads; without, the attribute's name comes first.
        let config = r#"{"rules": [
            {"attribute": "employees", "min": 500, "points": 15, "text": "{value} staff"},
            {"attribute": "country", "equals": "India", "points": 5}
        ]}"#;
        let lead = [("employees", Value::Number(919.0)), ("country", Value::Text("India"))];
        let buf = batch(&[&lead]);
        let factors = Fit::create(config).unwrap().explain(&buf.view(), 0).unwrap();
        let details: Vec<&str> = factors.iter().map(|f| f.detail.as_str()).collect();
        assert_eq!(details, ["919 staff (500+)", "country India"]);
    }

    #[test]
    fn bad_rules_are_refused_with_their_position() {
        let error = |rules: &str| Fit::create(&format!(r#"{{"rules": [{rules}]}}"#)).unwrap_err();
        assert_eq!(
            error(r#"{"attribute": "a", "points": 1, "equals": 1}, {"attribute": "b", "points": 1}"#),
            "rules[1]: give exactly one matcher: equals, one_of, min/max or regex"
        );
        assert!(error(r#"{"attribute": "a", "points": 1, "regex": "("}"#).starts_with("rules[0]: regex:"));
        assert_eq!(
            error(r#"{"attribute": "a", "points": 1, "min": 5, "max": 1}"#),
            "rules[0]: min must not exceed max, got 5-1"
        );
        assert!(error(r#"{"attribute": "a", "points": -1, "equals": "x"}"#).starts_with("rules: at least one"));
        assert!(Fit::create(r#"{"rulez": []}"#).unwrap_err().contains("unknown field `rulez`"));
    }
}
