//! The engagement scorer: what the lead does. Each event kind is worth points (negative for
//! signs of disinterest), halved every half-life since the event happened, computed exactly at
//! scoring time; each kind's total is capped, and a lead silent for too long loses points. Those
//! are the lead's points; its score is the same total saturated to 0-100.

use std::collections::BTreeMap;

use leadscore_plugin_api::{Batch, Factor, Lead, Scorer, export_scorer};
use serde::Deserialize;

const DAY_MS: f64 = 86_400_000.0;

/// The engagement scorer's configuration; every key is optional.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EngagementConfig {
    /// Points halve every this many days.
    half_life_days: f64,
    /// A lead with no event for this many days loses `inactivity_penalty` points; 0 turns the
    /// penalty off.
    inactive_after_days: f64,
    inactivity_penalty: f64,
    /// Points and cap per event kind; when given, replaces the whole default table.
    kinds: BTreeMap<String, KindConfig>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KindConfig {
    points: f64,
    /// The most (in magnitude) this kind adds up to, after decay.
    cap: f64,
}

impl Default for EngagementConfig {
    fn default() -> Self {
        let kind = |points, cap| KindConfig { points, cap };
        let kinds = [
            ("page_view:/pricing", kind(15.0, 45.0)),
            ("content_download", kind(10.0, 30.0)),
            ("webinar_attended", kind(20.0, 40.0)),
            ("demo_request", kind(25.0, 50.0)),
            ("email_open", kind(5.0, 20.0)),
            ("unsubscribe", kind(-10.0, 10.0)),
            ("page_view:/careers", kind(-5.0, 15.0)),
            ("support_ticket", kind(-3.0, 9.0)),
        ];
        Self {
            half_life_days: 30.0,
            inactive_after_days: 30.0,
            inactivity_penalty: 10.0,
            kinds: kinds.into_iter().map(|(name, kind)| (name.to_string(), kind)).collect(),
        }
    }
}

#[derive(Debug)]
pub struct Engagement {
    half_life_ms: f64,
    /// Milliseconds of silence before the penalty; infinite when off.
    inactive_after_ms: f64,
    inactivity_penalty: f64,
    kinds: Vec<(String, KindConfig)>,
    /// Each kind's name as words ("page view /pricing"), for explanations.
    words: Vec<String>,
}

/// One lead's decayed, capped points per configured kind, and whether the penalty applies.
struct Tally {
    per_kind: Vec<f64>,
    counts: Vec<u32>,
    inactive: bool,
}

impl Engagement {
    fn from_config(config: EngagementConfig) -> Result<Self, String> {
        let positive = |name: &str, value: f64| {
            if value.is_finite() && value > 0.0 { Ok(()) } else { Err(format!("{name} must be above 0, got {value}")) }
        };
        positive("half_life_days", config.half_life_days)?;
        if !(config.inactive_after_days.is_finite() && config.inactive_after_days >= 0.0) {
            return Err(format!("inactive_after_days must be 0 or more, got {}", config.inactive_after_days));
        }
        if !(config.inactivity_penalty.is_finite() && config.inactivity_penalty >= 0.0) {
            return Err(format!("inactivity_penalty must be 0 or more, got {}", config.inactivity_penalty));
        }
        for (name, kind) in &config.kinds {
            if !kind.points.is_finite() {
                return Err(format!("kinds.{name}.points must be a finite number, got {}", kind.points));
            }
            positive(&format!("kinds.{name}.cap"), kind.cap)?;
        }
        let inactive_after_ms =
            if config.inactive_after_days == 0.0 { f64::INFINITY } else { config.inactive_after_days * DAY_MS };
        Ok(Self {
            half_life_ms: config.half_life_days * DAY_MS,
            inactive_after_ms,
            inactivity_penalty: config.inactivity_penalty,
            words: config.kinds.keys().map(|name| name.replace(['_', ':'], " ").replace("  ", " ")).collect(),
            kinds: config.kinds.into_iter().collect(),
        })
    }

    /// Maps each event kind of the batch to a configured kind, once per batch.
    fn resolve(&self, batch: &Batch<'_>) -> Vec<Option<usize>> {
        batch.kinds().map(|kind| self.kinds.iter().position(|(name, _)| name == kind)).collect()
    }

    fn tally(&self, lead: &Lead<'_>, now_ms: i64, kinds: &[Option<usize>], tally: &mut Tally) {
        tally.per_kind.clear();
        tally.per_kind.resize(self.kinds.len(), 0.0);
        tally.counts.clear();
        tally.counts.resize(self.kinds.len(), 0);
        let events = lead.events();
        for event in events {
            let Some(&Some(kind)) = kinds.get(event.kind as usize) else { continue };
            // Events stamped after `now` (clock skew) count as just happened.
            let age_ms = (now_ms - event.at_ms).max(0) as f64;
            tally.per_kind[kind] += self.kinds[kind].1.points * (-age_ms / self.half_life_ms).exp2();
            tally.counts[kind] += 1;
        }
        for (points, (_, kind)) in tally.per_kind.iter_mut().zip(&self.kinds) {
            *points = points.clamp(-kind.cap, kind.cap);
        }
        tally.inactive = events.last().is_some_and(|last| (now_ms - last.at_ms) as f64 > self.inactive_after_ms);
    }

    fn raw_total(&self, tally: &Tally) -> f64 {
        let penalty = if tally.inactive { self.inactivity_penalty } else { 0.0 };
        tally.per_kind.iter().sum::<f64>() - penalty
    }

    /// A lead's points per kind it did, and the inactivity penalty if it applies; each said in
    /// plain words: "3× page view /pricing over 14 days, last today".
    fn factors(&self, batch: &Batch<'_>, lead: usize) -> Vec<Factor> {
        let kinds = self.resolve(batch);
        let mut tally = Self::empty_tally();
        let (lead, now_ms) = (batch.lead(lead), batch.now_ms());
        self.tally(&lead, now_ms, &kinds, &mut tally);
        // The first and the latest event of each kind, for the words.
        let mut spans = vec![(i64::MAX, i64::MIN); self.kinds.len()];
        for event in lead.events() {
            if let Some(&Some(kind)) = kinds.get(event.kind as usize) {
                let (first, last) = &mut spans[kind];
                (*first, *last) = ((*first).min(event.at_ms), (*last).max(event.at_ms));
            }
        }
        let mut factors: Vec<Factor> = self
            .kinds
            .iter()
            .enumerate()
            .filter(|(i, _)| tally.counts[*i] > 0)
            .map(|(i, (name, kind))| {
                let (count, points) = (tally.counts[i], tally.per_kind[i]);
                let words = &self.words[i];
                let (first, last) = spans[i];
                let ago = days_ago(now_ms, last);
                let mut detail = match count {
                    1 => format!("{words} {ago}"),
                    _ if last - first >= DAY_MS as i64 => {
                        format!("{count}× {words} over {} days, last {ago}", ((last - first) as f64 / DAY_MS).round())
                    }
                    _ => format!("{count}× {words} {ago}"),
                };
                // Say what changed the points from count × points: the cap, or age.
                let full = f64::from(count) * kind.points;
                if points.abs() >= kind.cap {
                    detail.push_str(&format!(", capped at {}", kind.cap));
                } else if (full - points).abs() >= 0.5 {
                    detail.push_str(&format!(", {full} points before decay"));
                }
                Factor { feature: name.clone(), contribution: points, detail }
            })
            .collect();
        if tally.inactive {
            factors.push(Factor {
                feature: "inactivity".into(),
                contribution: -self.inactivity_penalty,
                detail: format!("no event for over {:.0} days", self.inactive_after_ms / DAY_MS),
            });
        }
        factors
    }

    fn empty_tally() -> Tally {
        Tally { per_kind: Vec::new(), counts: Vec::new(), inactive: false }
    }
}

impl Scorer for Engagement {
    const NAME: &'static str = "engagement";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn create(config: &str) -> Result<Self, String> {
        let config: EngagementConfig = serde_json::from_str(config).map_err(|e| e.to_string())?;
        Self::from_config(config)
    }

    fn score(&self, batch: &Batch<'_>, scores: &mut [f64]) -> Result<(), String> {
        self.score_points(batch, scores, &mut vec![0.0; scores.len()])
    }

    fn score_points(&self, batch: &Batch<'_>, scores: &mut [f64], points: &mut [f64]) -> Result<(), String> {
        let kinds = self.resolve(batch);
        let mut tally = Self::empty_tally();
        for ((lead, score), points) in batch.leads().zip(scores).zip(points) {
            self.tally(&lead, batch.now_ms(), &kinds, &mut tally);
            *points = self.raw_total(&tally);
            *score = points.clamp(0.0, 100.0);
        }
        Ok(())
    }

    fn explain(&self, batch: &Batch<'_>, lead: usize) -> Result<Vec<Factor>, String> {
        let mut factors = self.factors(batch, lead);
        let raw: f64 = factors.iter().map(|f| f.contribution).sum();
        let saturated = raw.clamp(0.0, 100.0);
        if saturated != raw {
            let detail = format!("the score saturates within 0-100 (points gave {raw:.1})");
            factors.push(Factor { feature: "saturation".into(), contribution: saturated - raw, detail });
        }
        Ok(factors)
    }

    fn explain_points(&self, batch: &Batch<'_>, lead: usize) -> Result<Vec<Factor>, String> {
        Ok(self.factors(batch, lead))
    }
}

export_scorer!(Engagement);

/// How long ago an event was, in whole days of 24 hours: "today", "yesterday", "9 days ago".
fn days_ago(now_ms: i64, at_ms: i64) -> String {
    match ((now_ms - at_ms).max(0) as f64 / DAY_MS) as i64 {
        0 => "today".into(),
        1 => "yesterday".into(),
        days => format!("{days} days ago"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_plugin_api::BatchBuf;

    const NOW: i64 = 1_800_000_000_000;
    const HALF_LIFE_MS: i64 = 30 * 86_400_000;

    /// Scores one lead per event list, each event a (kind, age in ms) pair.
    fn scores(config: &str, leads: &[&[(&str, i64)]]) -> Vec<f64> {
        let scorer = Engagement::create(config).unwrap();
        let buf = batch(leads);
        let mut out = vec![f64::NAN; leads.len()];
        scorer.score(&buf.view(), &mut out).unwrap();
        out
    }

    fn batch(leads: &[&[(&str, i64)]]) -> BatchBuf {
        let mut kinds: Vec<&str> = leads.iter().flat_map(|events| events.iter().map(|(kind, _)| *kind)).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let mut buf = BatchBuf::new(NOW);
        for kind in &kinds {
            buf.push_kind(kind);
        }
        for (i, events) in leads.iter().enumerate() {
            buf.begin_lead(&format!("lead-{i}"), 0);
            let mut events = events.to_vec();
            events.sort_by_key(|(_, age)| -age);
            for (kind, age) in events {
                buf.event(kinds.binary_search(&kind).unwrap() as u32, NOW - age, 0.0);
            }
        }
        buf
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_default_points_count_in_full_when_fresh() {
        let kinds = [
            ("page_view:/pricing", 15.0),
            ("content_download", 10.0),
            ("webinar_attended", 20.0),
            ("demo_request", 25.0),
            ("email_open", 5.0),
        ];
        let leads: Vec<[(&str, i64); 1]> = kinds.iter().map(|(kind, _)| [(*kind, 0)]).collect();
        let leads: Vec<&[(&str, i64)]> = leads.iter().map(|l| l.as_slice()).collect();
        let got = scores("{}", &leads);
        for ((kind, points), score) in kinds.iter().zip(got) {
            assert!(close(score, *points), "{kind}: {score}");
        }
    }

    #[test]
    fn negative_points_subtract() {
        let lead: &[(&str, i64)] =
            &[("demo_request", 0), ("unsubscribe", 0), ("page_view:/careers", 0), ("support_ticket", 0)];
        assert!(close(scores("{}", &[lead])[0], 25.0 - 10.0 - 5.0 - 3.0));
    }

    #[test]
    fn points_are_the_decayed_capped_total_without_saturation() {
        let scorer = Engagement::create("{}").unwrap();
        let busy: Vec<(&str, i64)> = ["demo_request", "webinar_attended", "page_view:/pricing"]
            .iter()
            .flat_map(|k| [(*k, 0), (*k, 0)])
            .collect();
        let buf = batch(&[&[("unsubscribe", 0)], &busy, &[("demo_request", HALF_LIFE_MS)]]);
        let (mut scores, mut points) = ([0.0; 3], [0.0; 3]);
        scorer.score_points(&buf.view(), &mut scores, &mut points).unwrap();
        assert_eq!(scores[..2], [0.0, 100.0]);
        assert!(close(points[0], -10.0) && close(points[1], 50.0 + 40.0 + 30.0), "{points:?}");
        assert!(close(points[2], 12.5) && close(scores[2], 12.5), "{points:?}");
        let factors = scorer.explain_points(&buf.view(), 1).unwrap();
        assert!(close(factors.iter().map(|f| f.contribution).sum(), 120.0), "{factors:?}");
    }

    #[test]
    fn points_halve_at_one_half_life_and_quarter_at_two() {
        let got = scores("{}", &[&[("demo_request", HALF_LIFE_MS)], &[("demo_request", 2 * HALF_LIFE_MS)]]);
        // Thirty days of silence is not yet inactive; sixty is, and 6.25 - 10 saturates at 0.
        assert!(close(got[0], 12.5), "{got:?}");
        assert_eq!(got[1], 0.0, "{got:?}");
        let no_penalty = r#"{"inactive_after_days": 0}"#;
        let got = scores(no_penalty, &[&[("demo_request", HALF_LIFE_MS)], &[("demo_request", 2 * HALF_LIFE_MS)]]);
        assert!(close(got[0], 12.5) && close(got[1], 6.25), "{got:?}");
    }

    #[test]
    fn each_kind_is_capped() {
        let opens: Vec<(&str, i64)> = (0..10).map(|i| ("email_open", i)).collect();
        let unsubscribes: Vec<(&str, i64)> = (0..3).map(|i| ("unsubscribe", i)).collect();
        let mut both = opens.clone();
        both.extend(&unsubscribes);
        let got = scores(r#"{"inactive_after_days": 0}"#, &[&opens, &both]);
        assert!((got[0] - 20.0).abs() < 1e-6, "{got:?}");
        assert!((got[1] - 10.0).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn the_total_saturates_at_100_and_explanations_add_up() {
        let lead: Vec<(&str, i64)> = ["demo_request", "webinar_attended", "page_view:/pricing", "content_download"]
            .iter()
            .flat_map(|kind| (0..3).map(move |i| (*kind, i)))
            .collect();
        assert_eq!(scores("{}", &[&lead])[0], 100.0);
        for events in [lead.as_slice(), &[("email_open", 40 * 86_400_000)], &[("unsubscribe", 0)]] {
            let scorer = Engagement::create("{}").unwrap();
            let buf = batch(&[events]);
            let factors = scorer.explain(&buf.view(), 0).unwrap();
            let total: f64 = factors.iter().map(|f| f.contribution).sum();
            assert!(close(total, scores("{}", &[events])[0]), "{factors:?}");
        }
    }

    #[test]
    fn factors_say_what_happened_in_plain_words() {
        let scorer = Engagement::create("{}").unwrap();
        let day = 86_400_000;
        let pricing = [("page_view:/pricing", 0), ("page_view:/pricing", 3 * day), ("page_view:/pricing", 14 * day)];
        let opens: Vec<(&str, i64)> = (0..10).map(|i| ("email_open", i)).collect();
        let buf = batch(&[&[("demo_request", 0)], &pricing, &opens, &[("webinar_attended", 40 * day)]]);
        let detail = |lead| scorer.explain_points(&buf.view(), lead).unwrap()[0].detail.clone();
        // Just now at its full points: nothing decayed.
        assert_eq!(detail(0), "demo request today");
        let pricing = detail(1);
        assert!(
            pricing.starts_with("3× page view /pricing over 14 days, last today, 45 points before decay"),
            "{pricing}"
        );
        assert_eq!(detail(2), "10× email open today, capped at 20");
        assert!(detail(3).starts_with("webinar attended 40 days ago,"), "{}", detail(3));
    }

    #[test]
    fn unknown_kinds_and_no_events_score_zero() {
        assert_eq!(scores("{}", &[&[("page_view:/blog", 0)], &[]]), [0.0, 0.0]);
    }

    #[test]
    fn bad_settings_name_the_key() {
        let error = |config: &str| Engagement::create(config).unwrap_err();
        assert_eq!(error(r#"{"half_life_days": 0}"#), "half_life_days must be above 0, got 0");
        assert_eq!(error(r#"{"kinds": {"x": {"points": 1, "cap": -1}}}"#), "kinds.x.cap must be above 0, got -1");
        assert!(error(r#"{"kinds": {"x": {"points": 1}}}"#).contains("missing field `cap`"));
    }
}
