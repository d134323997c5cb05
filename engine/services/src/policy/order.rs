//! A campaign's dialling order (`[campaigns.<c>.dialing]`), compiled: by score or by expected
//! value, the attributes that split its contact rates, and how long new leads come first.

use compact_str::CompactString;

use leadscore_config::{DialingConfig, DialingOrder};

#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub by: DialingOrder,
    /// Attributes that split the contact rates beyond the lead's zone or region.
    pub segment: Vec<CompactString>,
    /// The attribute holding a conversion's worth; `None`: every lead is worth 1.
    pub value: Option<CompactString>,
    /// New leads never called come first for this long after they were created; 0 is off.
    pub speed_to_lead_ms: i64,
    /// How far ahead a lead may wait for a better hour (`expected_value` only); 0 is never.
    pub hold_ms: i64,
    /// Calls' worth of trust a contact rate's estimate gives its coarser level.
    pub prior_calls: f64,
}

impl Default for Order {
    fn default() -> Self {
        Self::compile("", &DialingConfig::default()).expect("the default order compiles")
    }
}

impl Order {
    /// Checks a campaign's `dialing` section; every problem names its key under `path`.
    pub fn compile(path: &str, dialing: &DialingConfig) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let path = format!("{path}.dialing");
        // A duration of at most `max_ms`; `rule` gives an example and the bounds.
        let mut duration = |key: &str, text: &str, max_ms: u128, rule: &str| match humantime::parse_duration(text) {
            Ok(d) if d.as_millis() <= max_ms => d.as_millis() as i64,
            _ => {
                problems.push(format!("{path}.{key}: must be a duration such as {rule}, got {text:?}"));
                0
            }
        };
        let speed_to_lead_ms =
            duration("speed_to_lead", &dialing.speed_to_lead, 7 * 86_400_000, "5m, at most 7d (0s is off)");
        let hold_ms = duration(
            "hold_for_better_hour",
            &dialing.hold_for_better_hour,
            12 * 3_600_000,
            "2h, at most 12h (0s never waits)",
        );
        if hold_ms > 0 && dialing.order != DialingOrder::ExpectedValue {
            problems.push(format!(
                "{path}.hold_for_better_hour: waits for a better contact rate, so needs order = \"expected_value\""
            ));
        }
        if !(dialing.prior_calls.is_finite() && (0.0..=1e6).contains(&dialing.prior_calls)) {
            problems.push(format!("{path}.prior_calls: must be 0-1000000, got {}", dialing.prior_calls));
        }
        for (i, name) in dialing.segment.iter().enumerate() {
            if name.trim().is_empty() {
                problems.push(format!("{path}.segment[{i}]: must name an attribute"));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            by: dialing.order,
            segment: dialing.segment.iter().map(|s| CompactString::from(s.trim())).collect(),
            value: (!dialing.value.trim().is_empty()).then(|| dialing.value.trim().into()),
            speed_to_lead_ms,
            hold_ms,
            prior_calls: dialing.prior_calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_orders_name_their_key_and_the_rule() {
        let wrong = DialingConfig {
            speed_to_lead: "soon".into(),
            hold_for_better_hour: "2h".into(),
            prior_calls: -1.0,
            segment: vec![" ".into()],
            ..DialingConfig::default()
        };
        let problems = Order::compile("campaigns.c", &wrong).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "campaigns.c.dialing.speed_to_lead",
                "campaigns.c.dialing.hold_for_better_hour",
                "campaigns.c.dialing.prior_calls",
                "campaigns.c.dialing.segment[0]"
            ],
            "{problems:?}"
        );
        assert!(problems[1].contains("expected_value"), "{problems:?}");
        let right = DialingConfig { order: DialingOrder::ExpectedValue, ..wrong.clone() };
        let right =
            DialingConfig { speed_to_lead: "5m".into(), prior_calls: 5.0, segment: vec!["role".into()], ..right };
        let order = Order::compile("campaigns.c", &right).unwrap();
        assert_eq!((order.speed_to_lead_ms, order.hold_ms, order.segment.len()), (300_000, 7_200_000, 1));
    }
}
