//! A live ranked list: a campaign's top K under a query's filters, kept current by the
//! ranking's changes rather than re-read. Each change costs a hash lookup and a comparison with
//! the list's last lead unless it touches the list; only a change that takes a lead out of a
//! full list reads the ranking, for the one lead that takes its place.
//!
//! Changes are state, not steps: "this lead's score is now s". Applied in their order they
//! bring the list to the ranking's state whatever it read meanwhile, so a list that reads the
//! ranking a little ahead of its changes (a refill, a snapshot) settles on the same list once
//! it has taken every change. The diffs it reports let a client keep the same list: each says
//! where the lead stands after it, in the order the client applies them.

use std::collections::HashSet;
use std::sync::Arc;

use super::index::{RankChange, ScoreIndex};
use super::pipeline::{Band, Pipeline};
use super::read::from_entry;
use super::{LeadScore, ScoreError, Scoring, TopQuery};
use leadscore_store::lead::LeadId;

/// A change to a watched list, as its client applies it.
#[derive(Clone, Debug, PartialEq)]
pub enum Diff {
    /// The lead joins the list at `rank` (1 is the best), those from there on moving down.
    Entered { rank: usize, score: LeadScore },
    /// The lead leaves the list, those after it moving up.
    Left(LeadId),
    /// The lead, already listed, is now at `rank` with this score.
    Moved { rank: usize, score: LeadScore },
}

/// One watcher's list and what it watches.
#[derive(Debug)]
pub struct TopList {
    query: TopQuery,
    /// Best first: (score, lead), ordered as the ranking orders them.
    list: Vec<(f64, LeadId)>,
    members: HashSet<LeadId>,
    /// The ranking's change the list is current to.
    pub seq: u64,
    floor: Floor,
}

/// A list's floor in its ranking: the least score a lead can join it at, so that changes
/// further down are not sent to it. Held while the list is watched.
#[derive(Debug)]
struct Floor {
    index: Arc<ScoreIndex>,
    campaign: Arc<str>,
    watcher: u64,
    /// As last told to the index.
    told: f64,
}

impl Floor {
    fn set(&mut self, floor: f64) {
        if floor != self.told {
            self.told = floor;
            self.index.set_floor(&self.campaign, self.watcher, Some(floor));
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.index.set_floor(&self.campaign, self.watcher, None);
    }
}

/// Whether a lead, with its score, may be listed beyond the query's own filters.
pub type Keep<'a> = &'a dyn Fn(&LeadId, f64) -> bool;

/// The order of the ranking: a higher score first, then the lower id.
fn before(a: (f64, &LeadId), b: (f64, &LeadId)) -> bool {
    a.0 > b.0 || a.0 == b.0 && a.1 < b.1
}

impl TopList {
    pub fn leads(&self) -> impl Iterator<Item = &(f64, LeadId)> {
        self.list.iter()
    }

    fn position(&self, id: &LeadId) -> Option<usize> {
        self.list.iter().position(|(_, listed)| listed == id)
    }

    fn insert(&mut self, score: f64, id: LeadId) -> usize {
        let at = self.list.partition_point(|(s, listed)| before((*s, listed), (score, &id)));
        self.members.insert(id.clone());
        self.list.insert(at, (score, id));
        at
    }

    fn remove(&mut self, at: usize) -> LeadId {
        let (_, id) = self.list.remove(at);
        self.members.remove(&id);
        id
    }

    /// The least score a lead can join at: the last one's, once full.
    fn threshold(&self) -> f64 {
        match self.list.get(self.query.limit.saturating_sub(1)) {
            Some((score, _)) => *score,
            None => 0.0,
        }
    }
}

impl Scoring {
    /// A list of the campaign's best leads under `query`, as the ranking stands now, and the
    /// receiver of the changes that follow: subscribed before the list is read, so none is
    /// missed. After falling behind, `refresh` reads the list afresh.
    pub fn watch_top(
        &self,
        query: TopQuery,
        keep: Keep<'_>,
    ) -> Result<(TopList, Vec<LeadScore>, tokio::sync::broadcast::Receiver<RankChange>), ScoreError> {
        let pipeline = self.pipeline();
        let campaign = pipeline.campaigns[pipeline.campaign_or_error("campaign", &query.campaign)?].name.clone();
        let changes = self.index.watch_rankings();
        let watcher = self.index.watch_list(&campaign);
        let floor = Floor { index: self.index.clone(), campaign, watcher, told: 0.0 };
        let mut list = TopList { query, list: Vec::new(), members: HashSet::new(), seq: 0, floor };
        let snapshot = self.refresh(&mut list, keep)?;
        Ok((list, snapshot, changes))
    }

    /// Reads the list afresh, as the ranking stands now; the changes numbered up to the list's
    /// `seq` are in it.
    pub fn refresh(&self, list: &mut TopList, keep: Keep<'_>) -> Result<Vec<LeadScore>, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = pipeline.campaign_or_error("campaign", &list.query.campaign)?;
        // Every change reaches the list while it reads the ranking.
        list.floor.set(0.0);
        list.seq = self.index.ranking_seq(&pipeline.campaigns[campaign].name).unwrap_or(0);
        let found = self.scan(&pipeline, campaign, &list.query, None, list.query.limit, keep);
        list.list = found.iter().map(|s| (s.score, s.lead_id.clone())).collect();
        list.members = found.iter().map(|s| s.lead_id.clone()).collect();
        let threshold = list.threshold();
        list.floor.set(threshold);
        Ok(found)
    }

    /// Takes one change of the campaign's ranking into the list; what its client must do to
    /// keep the same list. A change of another campaign, or one the list already has, does
    /// nothing.
    pub fn apply_change(&self, list: &mut TopList, change: &RankChange, keep: Keep<'_>) -> Vec<Diff> {
        let pipeline = self.pipeline();
        let Some(campaign) = pipeline.campaign(&list.query.campaign) else { return Vec::new() };
        let name = &pipeline.campaigns[campaign].name;
        if change.campaign != *name || change.seq <= list.seq {
            return Vec::new();
        }
        list.seq = change.seq;
        let id = &change.lead;
        // A hash lookup first: most changes are of leads not listed.
        let was = if list.members.contains(id) { list.position(id) } else { None };
        let limit = list.query.limit;
        let full = list.list.len() >= limit;
        // Most changes touch nothing listed and would not enter: no lookup beyond this.
        let would_enter = change
            .score
            .is_some_and(|score| !full || list.list.last().is_some_and(|(s, last)| before((score, id), (*s, last))));
        if was.is_none() && !would_enter {
            return Vec::new();
        }
        let bands = &pipeline.campaigns[campaign].bands;
        let listed = change.score.filter(|&score| {
            let band = Band::of(score, bands);
            self.passes(&list.query, &pipeline.campaigns[campaign], id, band) && keep(id, score)
        });
        let mut diffs = Vec::new();
        let score_of = |id: &LeadId, score: f64| self.listed(&pipeline, campaign, id, score);
        // A listed lead fallen to the end of a full list may owe its place to one not listed:
        // it waits for the refill below to decide.
        let mut falling = false;
        match (was, listed) {
            (None, None) => return diffs,
            (Some(at), None) => {
                list.remove(at);
                diffs.push(Diff::Left(id.clone()));
            }
            (Some(at), Some(score)) => {
                let old = list.list[at].0;
                list.remove(at);
                let rank = list.insert(score, id.clone());
                if full && rank + 1 == limit && score < old {
                    list.remove(rank);
                    falling = true;
                } else if old != score || rank != at {
                    diffs.push(Diff::Moved { rank: rank + 1, score: score_of(id, score) });
                }
            }
            (None, Some(score)) => {
                let rank = list.insert(score, id.clone());
                diffs.push(Diff::Entered { rank: rank + 1, score: score_of(id, score) });
            }
        }
        // One too many: the last leaves. One too few where the list was full: the best of the
        // rest of the ranking takes the last place, if any does.
        if list.list.len() > limit {
            diffs.push(Diff::Left(list.remove(limit)));
        } else if full && list.list.len() < limit {
            // Every change reaches the list while it reads the ranking.
            list.floor.set(0.0);
            let after = list.list.last().map(|(s, id)| (*s, id.clone()));
            let members = &list.members;
            let unlisted = |lead: &LeadId, score: f64| !members.contains(lead) && keep(lead, score);
            let next = self.scan(&pipeline, campaign, &list.query, after, 1, &unlisted).pop();
            match next {
                Some(next) if falling && next.lead_id == *id => {
                    let rank = list.insert(next.score, next.lead_id.clone());
                    diffs.push(Diff::Moved { rank: rank + 1, score: next });
                }
                next => {
                    if falling {
                        diffs.push(Diff::Left(id.clone()));
                    }
                    if let Some(next) = next {
                        let rank = list.insert(next.score, next.lead_id.clone());
                        diffs.push(Diff::Entered { rank: rank + 1, score: next });
                    }
                }
            }
        }
        let threshold = list.threshold();
        list.floor.set(threshold);
        diffs
    }

    /// Says the list is current to the ranking's latest change, when no change is waiting
    /// (`pending`): the changes between that did not reach it were below its floor.
    pub fn caught_up(&self, list: &mut TopList, pending: impl FnOnce() -> bool) -> u64 {
        let pipeline = self.pipeline();
        let now = pipeline
            .campaign(&list.query.campaign)
            .and_then(|c| self.index.ranking_seq(&pipeline.campaigns[c].name))
            .unwrap_or(list.seq);
        // Read first: every change numbered up to `now` was sent before it could be read.
        if !pending() {
            list.seq = list.seq.max(now);
        }
        list.seq
    }

    /// A listed lead's score as a diff shows it: its breakdown from the index, with the score
    /// the list has (only the score and band if it is gone from the index meanwhile).
    fn listed(&self, pipeline: &Pipeline, campaign: usize, id: &LeadId, score: f64) -> LeadScore {
        let band = Band::of(score, &pipeline.campaigns[campaign].bands);
        let found = self.index.read(id, |entry| from_entry(pipeline, campaign, id, entry, score, band));
        found.unwrap_or_else(|| LeadScore {
            lead_id: id.clone(),
            campaign: pipeline.campaigns[campaign].name.clone(),
            score,
            band,
            grade: String::new(),
            scorers: Vec::new(),
            config_version: 0,
            scored_at_ms: 0,
            account: None,
        })
    }
}
