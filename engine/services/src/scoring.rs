//! Scoring: runs the loaded scorers over leads in batches, composes their scores per campaign,
//! keeps every stored lead's score current in a ranked index, and explains any score.
//!
//! Stored leads are rescored when they change (the api calls `rescore` after the store accepts
//! a change) and by a periodic sweep, so time decay shows. Leads given inline are scored and
//! forgotten. Rescoring returns the leads whose scores changed; scoring calls nothing above it,
//! so whoever rescored tells the dialer.

pub mod accounts;
mod batch;
pub mod card;
pub mod distribution;
pub mod index;
pub mod pipeline;
mod read;
pub mod recent;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use compact_str::CompactString;
use leadscore_plugin_api::{BatchBuf, Factor};
use tokio::sync::broadcast;

pub use accounts::{AccountScore, AccountShare};
pub use index::CampaignScore;
use index::{Applied, Crossing, ScoreIndex, Update};
use leadscore_config::Composition;
use leadscore_plugin_loader::CallError;
use leadscore_store::Store;
use leadscore_store::clock::Clock;
use leadscore_store::history::{Cause, ScoreChange};
use leadscore_store::lead::{LeadId, Value};
use leadscore_store::mutation::{EventInput, LeadInput};
use leadscore_store::sync::{Rank, RwLock};
use pipeline::{Band, Campaign, Part, Pipeline};
use read::grade_of;

/// Why a score could not be given.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("{field}: unknown campaign {name:?}; configured: {known}")]
    UnknownCampaign { field: String, name: String, known: String },
    #[error("lead {0:?} does not exist")]
    NotFound(LeadId),
    #[error("lead {lead:?} has no score in campaign {campaign:?}: {why}")]
    Unscored { lead: LeadId, campaign: Arc<str>, why: &'static str },
    #[error("no scorer weighted by campaign {0:?} is in service")]
    NoScorer(Arc<str>),
    #[error(transparent)]
    Plugin(#[from] CallError),
}

/// A lead's score in one campaign, with each scorer's part.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadScore {
    pub lead_id: LeadId,
    pub campaign: Arc<str>,
    pub score: f64,
    pub band: Band,
    pub grade: String,
    pub scorers: Vec<ScorerScore>,
    pub config_version: u64,
    pub scored_at_ms: i64,
    /// The lead's account and its score in the campaign; set by `explain`.
    pub account: Option<AccountScore>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScorerScore {
    pub scorer: Arc<str>,
    pub score: f64,
    pub points: f64,
    pub weight: f64,
    /// This scorer's share of the composite: its weighted points, which add up to the
    /// composite before its floor at 0, or its part of the weighted mean.
    pub contribution: f64,
    /// Biggest first, in points in `points` composition; filled only when an explanation was
    /// asked for.
    pub factors: Vec<Factor>,
}

/// Why stored leads are being rescored; each changed score enters the lead's history with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Events were recorded: the cause is each lead's newest event.
    Events,
    Upsert,
    /// A configuration change, by the version it made.
    Config(u64),
    /// Time passed: the sweep, or an explanation scoring a lead afresh.
    Decay,
    /// The scorer plugins were reloaded.
    Reload,
}

/// A condition on a stored lead's attribute, for ranking queries.
#[derive(Clone, Debug)]
pub enum AttributeMatch {
    /// Text compares without regard to ASCII case.
    Equals(Value),
    /// Inclusive; an open bound is `None`.
    Range { min: Option<f64>, max: Option<f64> },
}

/// What `top` returns: only leads in these bands (all if empty) whose attributes match.
#[derive(Clone, Debug, Default)]
pub struct TopQuery {
    pub campaign: String,
    pub limit: usize,
    pub bands: Vec<Band>,
    pub filters: Vec<(CompactString, AttributeMatch)>,
    /// Each lead's top factors too.
    pub explain: bool,
    /// Only leads an agent could claim now (`Dialer::top` applies it).
    pub callable_now: bool,
    /// Leave out leads whose latest call in the campaign was final (`Dialer::top`).
    pub exclude_finished: bool,
    /// Only leads with this text (lower case) in their id or display attributes; empty: all.
    pub search: String,
}

#[derive(Debug)]
pub struct Scoring {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    /// The current generation's pipeline, swapped in by `install`.
    pipeline: RwLock<Arc<Pipeline>>,
    /// Bumped on every swap of the pipeline; scores of an older generation never replace newer.
    generation: AtomicU64,
    index: Arc<ScoreIndex>,
    /// Erasures so far: a rescore that saw none while it ran need not check its new entries
    /// against the store.
    erasures: AtomicU64,
}

impl Scoring {
    /// Scores every stored lead with a generation's pipeline.
    pub fn start(store: Arc<Store>, clock: Arc<dyn Clock>, pipeline: Arc<Pipeline>) -> Arc<Self> {
        let index = Arc::new(ScoreIndex::new(&pipeline.campaigns));
        let scoring = Arc::new(Self {
            store,
            clock,
            pipeline: RwLock::new(Rank::Pipeline, pipeline),
            generation: AtomicU64::new(1),
            index,
            erasures: AtomicU64::new(0),
        });
        // What changed while the server was down shows as time passing.
        scoring.rescore_all(Trigger::Decay);
        scoring
    }

    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.read().clone()
    }

    /// Band crossings of stored leads, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Crossing> {
        self.index.subscribe()
    }

    /// The campaign's latest `count` crossings that `wanted` keeps, oldest first (at most
    /// `recent::RECENT_CROSSINGS`, since the server started).
    pub fn recent_crossings(&self, campaign: &str, count: usize, wanted: impl Fn(&Crossing) -> bool) -> Vec<Crossing> {
        self.index.recent.latest(campaign, count, wanted)
    }

    /// Rescores these stored leads (erased ones are skipped); returns those whose scores or
    /// lead changed. Many leads are split across `scoring.threads` threads, a whole number of
    /// batches each.
    pub fn rescore(&self, ids: &[LeadId], trigger: Trigger) -> Vec<LeadId> {
        let pipeline = self.pipeline();
        let generation = self.generation.load(Ordering::Acquire);
        let batch_size = pipeline.config.scoring.batch_size;
        let batches = ids.len().div_ceil(batch_size);
        // Asked only for large rescores: finding the core count reads the cgroup files.
        let threads = if batches > 1 { pipeline.config.scoring_threads().min(batches) } else { 1 };
        if threads == 1 {
            return self.rescore_part(&pipeline, generation, ids, trigger);
        }
        let per_thread = ids.len().div_ceil(batch_size).div_ceil(threads) * batch_size;
        std::thread::scope(|scope| {
            let parts: Vec<_> = ids
                .chunks(per_thread)
                .map(|part| scope.spawn(|| self.rescore_part(&pipeline, generation, part, trigger)))
                .collect();
            parts.into_iter().flat_map(|part| part.join().expect("a rescoring thread panicked")).collect()
        })
    }

    fn rescore_part(&self, pipeline: &Pipeline, generation: u64, ids: &[LeadId], trigger: Trigger) -> Vec<LeadId> {
        let mut changed = Vec::new();
        let campaigns = pipeline.campaign_names();
        let (mut scorers, mut points, mut scores) = (Vec::new(), Vec::new(), Vec::new());
        batch::with_batch(|buf| {
            for chunk in ids.chunks(pipeline.config.scoring.batch_size) {
                let now = self.clock.now_ms();
                let erasures = self.erasures.load(Ordering::SeqCst);
                let members = batch::from_store(&self.store, chunk, &campaigns, now, buf);
                // Scores that hold until the lead's attributes change are taken from the index.
                let (columns, _) = pipeline.score(buf, (&mut scorers, &mut points), |i, scores, points| {
                    let (id, since) = (&chunk[members[i].index], members[i].attributes_lsn);
                    self.index.scores_since(id, &pipeline.names, since, scores, points)
                });
                for (i, member) in members.iter().enumerate() {
                    columns.row(i, &mut scorers, &mut points);
                    let update = update(pipeline, generation, member, (&scorers, &points), now, &mut scores);
                    let id = &chunk[member.index];
                    self.record(id, update, erasures, pipeline, cause(trigger, member), &mut changed);
                }
            }
        });
        changed
    }

    /// Rescores every stored lead; returns those whose scores or lead changed.
    pub fn rescore_all(&self, trigger: Trigger) -> Vec<LeadId> {
        self.rescore(&self.store.lead_ids(), trigger)
    }

    /// Records a stored lead's new scores; whether they changed. A lead erased while it was
    /// being scored (after its batch was read, before its scores were recorded) would come
    /// back as a new entry after `forget`: when an erasure happened since `erasures` was read,
    /// a new entry is checked against the store and forgotten again, so an erased lead never
    /// lingers in the ranking.
    ///
    /// A change enters the lead's history with `cause`, once the index lock is released. The
    /// lead joins `changed` if its scores changed, and so do its account's other leads when
    /// the account's score moved and something reads it (`Pipeline::reads_account_score`).
    fn record(
        &self,
        id: &LeadId,
        update: Update<'_>,
        erasures: u64,
        pipeline: &Pipeline,
        cause: Cause,
        changed: &mut Vec<LeadId>,
    ) {
        let (applied, account_moved) = self.index.apply(id, update);
        if account_moved && pipeline.reads_account_score {
            changed.extend(self.index.account_mates(id));
        }
        match applied {
            Applied::Unchanged => return,
            Applied::Changed => {}
            Applied::Added => {
                if self.erasures.load(Ordering::SeqCst) != erasures && self.store.read_lead(id, |_| ()).is_none() {
                    self.index.remove(id);
                    changed.push(id.clone());
                    return;
                }
            }
        }
        changed.push(id.clone());
        let changes = update.campaigns.iter().map(|(campaign, score, band)| ScoreChange {
            at_ms: update.scored_at_ms,
            campaign: CompactString::from(&**campaign),
            score: *score,
            band: *band as u8,
            cause,
        });
        let scoring = &pipeline.config.scoring;
        self.store.record_history(id, changes, scoring.history, scoring.history_min_decay);
    }

    /// A stored lead's changes of score and band, oldest first, in every campaign.
    pub fn history(&self, id: &str) -> Result<Vec<ScoreChange>, ScoreError> {
        self.store.history(id).ok_or_else(|| ScoreError::NotFound(id.into()))
    }

    /// Forgets an erased lead's scores.
    pub fn forget(&self, id: &str) {
        // Counted before the removal, so that a rescore recording the lead after the removal
        // sees the count move.
        self.erasures.fetch_add(1, Ordering::SeqCst);
        self.index.remove(id);
    }

    /// Takes a new generation's pipeline and rescores every lead with it; returns the leads
    /// whose scores changed. Scores of the old pipeline never replace the new ones.
    pub fn install(&self, next: Arc<Pipeline>, trigger: Trigger) -> Vec<LeadId> {
        self.index.set_campaigns(&next.campaigns);
        *self.pipeline.write() = next;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.rescore_all(trigger)
    }

    /// Scores leads given inline, not stored, at `now` (the time their events were checked
    /// against).
    pub fn score_inline(
        &self,
        leads: &[&(LeadInput, Vec<EventInput>)],
        campaign: &str,
        explain: bool,
        now: i64,
    ) -> Result<Vec<LeadScore>, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = pipeline.campaign_or_error("campaign", campaign)?;
        batch::with_batch(|buf| {
            batch::from_inputs(leads, now, buf);
            let columns = pipeline.score_strict(buf)?;
            let (mut scorers, mut points) = (Vec::new(), Vec::new());
            (0..leads.len())
                .map(|i| {
                    columns.row(i, &mut scorers, &mut points);
                    let explained = explain.then_some((&*buf, i));
                    describe(&pipeline, campaign, &leads[i].0.id, (&scorers, &points), now, explained)
                })
                .collect()
        })
    }

    /// Scores a stored lead now, explained factor by factor, and records the fresh score (the
    /// caller requeues the lead: its score may have moved).
    pub fn explain(&self, id: &str, campaign: &str) -> Result<LeadScore, ScoreError> {
        let pipeline = self.pipeline();
        let generation = self.generation.load(Ordering::Acquire);
        let campaign = pipeline.campaign_or_error("campaign", campaign)?;
        let now = self.clock.now_ms();
        let erasures = self.erasures.load(Ordering::SeqCst);
        let mut score = batch::with_batch(|buf| {
            let members = batch::from_store(&self.store, &[id.into()], &pipeline.campaign_names(), now, buf);
            let member = members.first().ok_or_else(|| ScoreError::NotFound(id.into()))?;
            let id: LeadId = id.into();
            let (mut scorers, mut points) = (Vec::new(), Vec::new());
            let (columns, failed) = pipeline.score(buf, (&mut scorers, &mut points), |_, scores, points| {
                self.index.scores_since(&id, &pipeline.names, member.attributes_lsn, scores, points)
            });
            if let Some(err) = failed {
                return Err(err.into());
            }
            columns.row(0, &mut scorers, &mut points);
            let parts = (&scorers[..], &points[..]);
            let mut campaigns = Vec::new();
            let fresh = update(&pipeline, generation, member, parts, now, &mut campaigns);
            // The caller requeues the lead itself; its account's other leads follow at the sweep.
            self.record(&id, fresh, erasures, &pipeline, Cause::Decay, &mut Vec::new());
            describe(&pipeline, campaign, &id, parts, now, Some((&*buf, 0)))
        })?;
        score.account = self.index.account_of(id, &pipeline.campaigns[campaign].name, 0);
        Ok(score)
    }
}

/// The cause a rescore gives a lead's history.
fn cause(trigger: Trigger, member: &batch::Member) -> Cause {
    match trigger {
        Trigger::Events => match member.newest_event {
            Some((kind, fingerprint)) => Cause::Event { kind, fingerprint },
            None => Cause::Upsert,
        },
        Trigger::Upsert => Cause::Upsert,
        Trigger::Config(version) => Cause::Config { version },
        Trigger::Decay => Cause::Decay,
        Trigger::Reload => Cause::Reload,
    }
}

/// A lead's scorer scores and points, one each per plugin.
type Parts<'a> = (&'a [f64], &'a [f64]);

/// A stored lead's new index values from its scorer scores and points; `scores` holds the
/// campaigns'.
fn update<'a>(
    pipeline: &'a Pipeline,
    generation: u64,
    member: &'a batch::Member,
    (scorers, points): Parts<'a>,
    now: i64,
    scores: &'a mut Vec<CampaignScore>,
) -> Update<'a> {
    scores.clear();
    for (c, campaign) in pipeline.campaigns.iter().enumerate() {
        if member.campaigns & (1 << c) != 0
            && let Some(score) = pipeline.compose(c, scorers, points)
        {
            scores.push((campaign.name.clone(), score, Band::of(score, &campaign.bands)));
        }
    }
    Update {
        version: generation,
        config_version: pipeline.version,
        lsn: member.lsn,
        scored_at_ms: now,
        scorer_names: &pipeline.names,
        scorers,
        points,
        campaigns: scores,
        account: member.account.as_ref(),
    }
}

/// A full score from scorer scores and points, with factors when `explain` names the lead in
/// a batch.
fn describe(
    pipeline: &Pipeline,
    campaign: usize,
    id: &LeadId,
    (scorers, points): Parts<'_>,
    now: i64,
    explain: Option<(&BatchBuf, usize)>,
) -> Result<LeadScore, ScoreError> {
    let Campaign { name, composition, weights, bands, .. } = &pipeline.campaigns[campaign];
    let score = pipeline.compose(campaign, scorers, points).ok_or_else(|| ScoreError::NoScorer(name.clone()))?;
    let parts: Vec<Part> = (0..pipeline.plugins.len())
        .map(|p| Part { weight: weights[p], score: scorers[p], points: points[p] })
        .collect();
    let shares = pipeline::shares(*composition, &parts);
    let mut breakdown = Vec::new();
    for (p, plugin) in pipeline.plugins.iter().enumerate() {
        if scorers[p].is_nan() {
            // Asked why, a weighted scorer out of service says so, with nothing counted.
            if let (Some(_), Some(reason)) = (explain.filter(|_| weights[p] > 0.0), plugin.stats().quarantine) {
                let detail = format!("quarantined, so left out of the score: {reason}");
                breakdown.push(ScorerScore {
                    scorer: pipeline.names[p].clone(),
                    score: 0.0,
                    points: 0.0,
                    weight: weights[p],
                    contribution: 0.0,
                    factors: vec![Factor { feature: "quarantined".into(), contribution: 0.0, detail }],
                });
            }
            continue;
        }
        let factors = match explain {
            Some((buf, lead)) if weights[p] > 0.0 => plugin.explain(buf, lead, *composition == Composition::Points)?,
            _ => Vec::new(),
        };
        breakdown.push(ScorerScore {
            scorer: pipeline.names[p].clone(),
            score: scorers[p],
            points: points[p],
            weight: weights[p],
            contribution: shares[p],
            factors,
        });
    }
    Ok(LeadScore {
        lead_id: id.clone(),
        campaign: name.clone(),
        score,
        band: Band::of(score, bands),
        grade: grade_of(&pipeline.names, scorers),
        scorers: breakdown,
        config_version: pipeline.version,
        scored_at_ms: now,
        account: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{event, fixture, lead};
    use leadscore_config::DEFAULT_CAMPAIGN;
    use leadscore_store::lead::Value;

    fn top(scoring: &Scoring) -> Vec<(String, f64)> {
        let query = TopQuery { campaign: String::new(), limit: 10, ..TopQuery::default() };
        scoring.top(&query).unwrap().into_iter().map(|s| (s.lead_id.to_string(), s.score)).collect()
    }

    #[test]
    fn an_event_rescores_its_lead_and_the_ranking_and_history_follow() {
        let f = fixture(&[("a", "+15550000001"), ("b", "+15550000002")]);
        let (before, _) = f.scoring.score_of("b", DEFAULT_CAMPAIGN).unwrap();
        assert_eq!(
            f.scoring.score_of("a", DEFAULT_CAMPAIGN),
            f.scoring.score_of("b", DEFAULT_CAMPAIGN),
            "alike before any event"
        );

        f.store.record_events(vec![event(&f, "b", "e1", "demo_request")]).unwrap();
        assert_eq!(f.scoring.rescore(&["b".into()], Trigger::Events), [LeadId::from("b")]);
        let (after, _) = f.scoring.score_of("b", DEFAULT_CAMPAIGN).unwrap();
        assert!(after > before, "{after} > {before}");
        assert_eq!(top(&f.scoring), [("b".to_owned(), after), ("a".to_owned(), before)]);
        let latest = f.scoring.history("b").unwrap().pop().unwrap();
        assert_eq!(latest.score, after);
        assert!(matches!(latest.cause, Cause::Event { .. }), "{:?}", latest.cause);
        // Nothing changed: nothing to requeue.
        assert!(f.scoring.rescore(&["b".into()], Trigger::Events).is_empty());
    }

    #[test]
    fn a_change_of_events_alone_calls_only_the_scorers_that_read_events() {
        let f = fixture(&[("a", "+15550000001")]);
        let pipeline = f.scoring.pipeline();
        let calls = |name: &str| pipeline.plugins.iter().find(|p| p.name == name).unwrap().stats().calls;
        let called = |since: (u64, u64)| (calls("fit") - since.0, calls("engagement") - since.1);
        let composite = || f.scoring.score_of("a", DEFAULT_CAMPAIGN).unwrap().0;

        let since = (calls("fit"), calls("engagement"));
        f.store.record_events(vec![event(&f, "a", "e1", "demo_request")]).unwrap();
        f.scoring.rescore(&["a".into()], Trigger::Events);
        f.clock.advance_ms(3_600_000);
        f.scoring.rescore_all(Trigger::Decay);
        assert_eq!(called(since), (0, 2), "fit reads attributes alone: neither an event nor time calls it");

        // New attributes call fit again, and the score it then gives is the one kept after.
        let before = composite();
        let attributes = vec![("role".into(), Value::Text("CTO".into())), ("employees".into(), Value::Number(640.0))];
        f.store.upsert_leads(vec![LeadInput { attributes, ..lead("a", "+15550000001") }]).unwrap();
        let since = (calls("fit"), calls("engagement"));
        f.scoring.rescore(&["a".into()], Trigger::Upsert);
        assert_eq!(called(since), (1, 1));
        let fitter = composite();
        assert!(fitter > before, "{fitter} > {before}");
        f.store.record_events(vec![event(&f, "a", "e2", "email_open")]).unwrap();
        f.scoring.rescore(&["a".into()], Trigger::Events);
        assert_eq!(called(since), (1, 2));
        let (before, since) = (composite(), (calls("fit"), calls("engagement")));
        let explained = f.scoring.explain("a", "").unwrap();
        assert_eq!(called(since), (1, 2), "fit only explains the score it keeps; engagement scores and explains");
        assert_eq!(explained.score, before, "as every scorer would give it now");
        let fit = &explained.scorers[0];
        assert_eq!(fit.factors.iter().map(|f| f.contribution).sum::<f64>(), fit.points, "{fit:?}");
    }

    #[test]
    fn an_explanation_splits_the_score_into_its_scorers_parts() {
        let f = fixture(&[("a", "+15550000001")]);
        f.store.record_events(vec![event(&f, "a", "e1", "email_open")]).unwrap();
        let explained = f.scoring.explain("a", "").unwrap();
        let names: Vec<&str> = explained.scorers.iter().map(|s| &*s.scorer).collect();
        assert_eq!(names, ["fit", "engagement"]);
        let sum: f64 = explained.scorers.iter().map(|s| s.contribution).sum();
        assert!((sum.max(0.0) - explained.score).abs() < 1e-9, "{sum} vs {}", explained.score);
        assert_eq!(f.scoring.score_of("a", DEFAULT_CAMPAIGN), Some((explained.score, explained.band)));
    }

    #[test]
    fn a_forgotten_lead_leaves_the_ranking_and_an_unknown_campaign_is_named() {
        let f = fixture(&[("a", "+15550000001"), ("b", "+15550000002")]);
        f.scoring.forget("a");
        assert_eq!(f.scoring.score_of("a", DEFAULT_CAMPAIGN), None);
        assert_eq!(top(&f.scoring).len(), 1);
        let query = TopQuery { campaign: "winter".into(), limit: 1, ..TopQuery::default() };
        assert!(matches!(f.scoring.top(&query), Err(ScoreError::UnknownCampaign { .. })));
    }
}
