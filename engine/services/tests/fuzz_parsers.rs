//! The configuration and the routing expression language against mangled and random input:
//! parsing never panics, a refusal says what is wrong (and, for an expression, at which
//! column), and whatever parses can be compiled and evaluated. `LEADSCORE_FUZZ_CASES` sets the
//! number of cases (default 256).

use leadscore_config::{Config, TokenConfig};
use leadscore_services::generation::Generation;
use leadscore_services::policy::expr::{Env, Expr, Scope, Skills};
use leadscore_services::scoring::pipeline::Band;
use leadscore_store::lead::Value;
use proptest::prelude::*;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("LEADSCORE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A configuration using most sections, as text.
fn sample() -> String {
    let mut config = Config::default();
    let spring = r#"
composition = "weighted_mean"
weights = { fit = 2.0, engagement = 1.0 }
account = { rollup = "top_mean", top = 2, fit = 0.5 }
shadow = { weights = { fit = 1.0 } }
filter = { bands = ["warm", "hot"], attributes = [{ name = "account.score", min = 50.0 }] }
"#;
    config.campaigns.insert("spring".into(), toml::from_str(spring).unwrap());
    config.auth.tokens.push(TokenConfig {
        name: "ops".into(),
        sha256: "6592806459dcb7539fd9abcf13ab58e00a6285549f380d8ea96cec67b305f117".into(),
        roles: vec!["admin".into()],
    });
    config.to_toml()
}

/// One token of the expression language, or something near one.
fn token() -> impl Strategy<Value = String> {
    let words = [
        "band",
        "score",
        "account.score",
        "lead.country",
        "lead.",
        "languages",
        "regions",
        "products",
        "tier",
        "id",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "has",
        "in",
        "and",
        "or",
        "not",
        "(",
        ")",
        "[",
        "]",
        ",",
        "'hot'",
        "'warm'",
        "'ES'",
        "'",
        "\"",
        "1.5",
        "-3",
        "1e309",
        "true",
        "false",
        "é",
        "'é'",
        "=",
        "!",
        "lead.a.b",
    ];
    prop_oneof![
        4 => prop::sample::select(words.to_vec()).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

struct Lead;

impl Env for Lead {
    fn band(&self) -> Band {
        Band::Hot
    }
    fn score(&self) -> f64 {
        81.0
    }
    fn account_score(&self) -> Option<f64> {
        Some(120.0)
    }
    fn attribute(&self, name: &str) -> Option<Value> {
        (name == "country").then(|| Value::Text("ES".into()))
    }
    fn agent(&self) -> (&str, &Skills) {
        static SKILLS: std::sync::OnceLock<Skills> = std::sync::OnceLock::new();
        ("a-1", SKILLS.get_or_init(|| Skills { languages: vec!["es".into()], tier: 2, ..Default::default() }))
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn mangled_configurations_parse_or_say_why(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = sample().into_bytes();
        for (at, byte) in &flips {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        match Config::parse(&String::from_utf8_lossy(&bytes)) {
            // What parses also compiles or names its problems.
            Ok(config) => {
                let problems = Generation::problems(&config);
                prop_assert!(problems.iter().all(|p| !p.is_empty()));
            }
            Err(err) => prop_assert!(!err.problems.is_empty() && err.problems.iter().all(|p| !p.is_empty())),
        }
    }

    #[test]
    fn expressions_parse_or_point_at_a_column(tokens in prop::collection::vec(token(), 0..12), spaced: bool) {
        let text = tokens.join(if spaced { " " } else { "" });
        for scope in [Scope::Lead, Scope::Agent] {
            match Expr::parse(&text, scope) {
                Ok(expr) => {
                    let _ = expr.holds(&Lead);
                }
                Err(err) => {
                    let columns = text.chars().count() + 1;
                    prop_assert!((1..=columns).contains(&err.column), "{text:?}: {err}");
                    prop_assert!(!err.message.is_empty());
                }
            }
        }
    }
}

#[test]
fn the_sample_configuration_is_valid() {
    let config = Config::parse(&sample()).unwrap();
    assert!(Generation::problems(&config).is_empty());
}
