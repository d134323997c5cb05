//! Reading the index: the top of a campaign, a lead's current score, accounts and the
//! distribution, without scoring anything.

use std::collections::HashMap;
use std::sync::Arc;

use compact_str::CompactString;

pub use super::accounts::AccountScore;
use super::accounts::AccountShare;
use super::card::card_of;
use super::distribution::Distribution;
use super::index::Entry;
use super::pipeline::{Band, Campaign, Part, Pipeline, grade};
use super::{
    AttributeMatch, LeadScore, ScoreError, ScorerScore, Scoring, TopQuery, accounts, batch, distribution, pipeline,
};
use leadscore_config::{ACCOUNT_SCORE, Composition};
use leadscore_store::dial::AtClaim;
use leadscore_store::lead::{LeadId, Value};

impl Scoring {
    /// The best stored leads of a campaign that pass the query's filters, best first, read
    /// from the ranked index.
    pub fn top(&self, query: &TopQuery) -> Result<Vec<LeadScore>, ScoreError> {
        self.top_where(query, &|_| true)
    }

    /// The same, of the leads `keep` keeps too (asked last, after the query's own filters).
    pub fn top_where(&self, query: &TopQuery, keep: &dyn Fn(&LeadId) -> bool) -> Result<Vec<LeadScore>, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = pipeline.campaign_or_error("campaign", &query.campaign)?;
        if self.matches_nothing(query) {
            return Ok(Vec::new());
        }
        let mut found = self.scan(&pipeline, campaign, query, None, query.limit, &|id, _| keep(id));
        if query.explain {
            self.add_factors(&pipeline, &mut found)?;
        }
        Ok(found)
    }

    /// The ids and scores of `top_where`'s answer, read from the ranking alone: nothing of a
    /// lead is copied but what the filters read.
    pub fn top_keys(&self, query: &TopQuery, keep: &dyn Fn(&LeadId) -> bool) -> Result<Vec<(LeadId, f64)>, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = &pipeline.campaigns[pipeline.campaign_or_error("campaign", &query.campaign)?];
        let mut found = Vec::with_capacity(query.limit.min(1024));
        if self.matches_nothing(query) {
            return Ok(found);
        }
        let page = (query.limit * 2).clamp(64, 4096);
        let mut after: Option<(f64, LeadId)> = None;
        while found.len() < query.limit {
            let Some(candidates) = self.index.top(&campaign.name, after.as_ref().map(|(s, id)| (*s, id)), page) else {
                break;
            };
            let Some(last) = candidates.last().cloned() else { break };
            for (id, score) in candidates {
                if self.passes(query, campaign, &id, Band::of(score, &campaign.bands)) && keep(&id) {
                    found.push((id, score));
                    if found.len() == query.limit {
                        break;
                    }
                }
            }
            after = Some((last.1, last.0));
        }
        Ok(found)
    }

    /// Whether a query filters on an attribute no lead has ever had: nothing matches it.
    fn matches_nothing(&self, query: &TopQuery) -> bool {
        let unknown = |name: &CompactString| name.as_str() != ACCOUNT_SCORE && self.store.attribute_sym(name).is_none();
        query.filters.iter().any(|(name, _)| unknown(name))
    }

    /// The scores of the leads `chosen` names in a query's campaign, in that order, each at the
    /// score it was ranked by (with its factors if the query asks); a lead no longer ranked in
    /// the campaign is left out.
    pub fn scores_at(&self, query: &TopQuery, chosen: &[(LeadId, f64)]) -> Result<Vec<LeadScore>, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = pipeline.campaign_or_error("campaign", &query.campaign)?;
        let (name, bands) = (&pipeline.campaigns[campaign].name, &pipeline.campaigns[campaign].bands);
        let mut found: Vec<LeadScore> = (chosen.iter())
            .filter_map(|(id, score)| {
                let entry = self.index.get(id)?;
                entry.campaigns.iter().any(|(c, ..)| c == name).then_some(())?;
                Some(from_entry(&pipeline, campaign, id, &entry, *score, Band::of(*score, bands)))
            })
            .collect();
        if query.explain {
            self.add_factors(&pipeline, &mut found)?;
        }
        Ok(found)
    }

    /// Up to `limit` leads of a campaign's ranking after `after` (a score and lead), best
    /// first, that pass the query's filters and `keep` (given the lead and its score).
    /// Candidates are copied out a page at a time so the ranking is never locked while
    /// filters read leads.
    pub(super) fn scan(
        &self,
        pipeline: &Pipeline,
        campaign: usize,
        query: &TopQuery,
        mut after: Option<(f64, LeadId)>,
        limit: usize,
        keep: &dyn Fn(&LeadId, f64) -> bool,
    ) -> Vec<LeadScore> {
        let name = pipeline.campaigns[campaign].name.clone();
        let mut found = Vec::with_capacity(limit.min(1024));
        let page = (limit * 2).clamp(64, 4096);
        while found.len() < limit {
            let Some(candidates) = self.index.top(&name, after.as_ref().map(|(s, id)| (*s, id)), page) else { break };
            let Some((last_id, last_score)) = candidates.last().cloned() else { break };
            for (id, score) in candidates {
                let Some(entry) = self.index.get(&id) else { continue };
                let Some(&(_, now, band)) = entry.campaigns.iter().find(|(c, ..)| *c == name) else { continue };
                // A lead rescored since the page was copied keeps the place and score the page
                // gave it, so the answer is in the ranking's order; a watcher is told of the
                // change after.
                let band = if now == score { band } else { Band::of(score, &pipeline.campaigns[campaign].bands) };
                if self.passes(query, &pipeline.campaigns[campaign], &id, band) && keep(&id, score) {
                    found.push(from_entry(pipeline, campaign, &id, &entry, score, band));
                    if found.len() == limit {
                        break;
                    }
                }
            }
            after = Some((last_score, last_id));
        }
        found
    }

    /// Whether a stored lead in a campaign's band passes a ranking query's filters: its band,
    /// its attributes, its account's score. A filter on an attribute no lead has ever had
    /// matches nothing.
    pub(super) fn passes(&self, query: &TopQuery, campaign: &Campaign, id: &LeadId, band: Band) -> bool {
        if !query.bands.is_empty() && !query.bands.contains(&band) {
            return false;
        }
        if !query.search.is_empty() && !self.found_by(&query.search, campaign, id) {
            return false;
        }
        let campaign = &*campaign.name;
        // `account.score` reads the lead's account; every other name, its attribute.
        let is_account = |name: &CompactString| name.as_str() == ACCOUNT_SCORE;
        if query.filters.iter().any(|(name, _)| is_account(name)) {
            let account = self.index.account_score(id, campaign).map(Value::Number);
            let on_account = query.filters.iter().filter(|(name, _)| is_account(name));
            if !on_account.clone().all(|(_, matcher)| account.as_ref().is_some_and(|a| attribute_matches(matcher, a))) {
                return false;
            }
        }
        let mut on_attributes = query.filters.iter().filter(|(name, _)| !is_account(name)).peekable();
        if on_attributes.peek().is_none() {
            return true;
        }
        self.store
            .read_lead(id, |lead| {
                on_attributes.all(|(name, matcher)| {
                    let Some(sym) = self.store.attribute_sym(name) else { return false };
                    let value = lead.attributes.binary_search_by_key(&sym, |(s, _)| *s).ok();
                    value.is_some_and(|i| attribute_matches(matcher, &lead.attributes[i].1))
                })
            })
            .unwrap_or(false)
    }

    /// Whether a search (lower case) is in the lead's id or one of the campaign's display
    /// attributes, ignoring case.
    fn found_by(&self, search: &str, campaign: &Campaign, id: &LeadId) -> bool {
        let found = |text: &str| text.to_lowercase().contains(search);
        found(id)
            || self
                .store
                .read_lead(id, |lead| {
                    card_of(&self.store, &campaign.display, lead).display.iter().any(|(_, v)| found(v))
                })
                .unwrap_or(false)
    }

    /// How many changes a campaign's ranking has taken (the empty name is the default
    /// campaign): what `TopLeads` answers is current to at least this change.
    pub fn ranking_seq(&self, campaign: &str) -> Option<u64> {
        let pipeline = self.pipeline();
        self.index.ranking_seq(&pipeline.campaigns[pipeline.campaign(campaign)?].name)
    }

    /// Fills in the factors of scores read from the ranking (a watched list's), as
    /// `TopLeads` does with `explain`.
    pub fn explain_listed(&self, leads: &mut [LeadScore]) -> Result<(), ScoreError> {
        self.add_factors(&self.pipeline(), leads)
    }

    /// Fills in each listed lead's factors as its scorers explain it now, leaving its scores
    /// as they were ranked; nothing is recorded.
    fn add_factors(&self, pipeline: &Pipeline, leads: &mut [LeadScore]) -> Result<(), ScoreError> {
        let ids: Vec<LeadId> = leads.iter().map(|l| l.lead_id.clone()).collect();
        batch::with_batch(|buf| {
            let members = batch::from_store(&self.store, &ids, &pipeline.campaign_names(), self.clock.now_ms(), buf);
            for (row, member) in members.iter().enumerate() {
                let lead = &mut leads[member.index];
                let Some(campaign) = pipeline.campaign(&lead.campaign) else { continue };
                let composition = pipeline.campaigns[campaign].composition;
                for part in &mut lead.scorers {
                    let Some(p) = pipeline.names.iter().position(|n| *n == part.scorer) else { continue };
                    // A scorer quarantined since the ranking has nothing more to say.
                    if part.weight > 0.0 && pipeline.plugins[p].is_active() {
                        part.factors = pipeline.plugins[p].explain(buf, row, composition == Composition::Points)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// A stored lead's score in a campaign as last computed, without factors.
    pub fn current(&self, id: &str, campaign: &str) -> Result<LeadScore, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = pipeline.campaign_or_error("campaign", campaign)?;
        let name = &pipeline.campaigns[campaign].name;
        let id: LeadId = id.into();
        let found = self.index.read(&id, |entry| {
            let &(_, score, band) = entry.campaigns.iter().find(|(c, ..)| c == name)?;
            Some(from_entry(&pipeline, campaign, &id, entry, score, band))
        });
        found.flatten().ok_or_else(|| self.unscored(&id, name))
    }

    /// Why a lead has no score in a campaign (its name as the pipeline has it): it is not
    /// stored, it is not in the campaign, or no scorer the campaign weighs gave it one.
    pub fn unscored(&self, id: &str, campaign: &Arc<str>) -> ScoreError {
        let default = self.pipeline().campaigns.first().is_some_and(|c| c.name == *campaign);
        let listed = self.store.read_lead(id, |lead| {
            default || lead.profile().is_some_and(|p| p.campaigns.iter().any(|c| c.as_str() == &**campaign))
        });
        let why = match listed {
            None => return ScoreError::NotFound(id.into()),
            Some(false) => "its campaigns do not name it",
            Some(true) => "no scorer the campaign weighs gave it one (see ListScorers)",
        };
        ScoreError::Unscored { lead: id.into(), campaign: campaign.clone(), why }
    }

    /// A stored lead's composite score and band in a campaign (its name as the pipeline has
    /// it), without the breakdown `current` builds.
    pub fn score_of(&self, id: &str, campaign: &str) -> Option<(f64, Band)> {
        self.index.read(id, |entry| {
            entry.campaigns.iter().find(|(c, ..)| &**c == campaign).map(|&(_, score, band)| (score, band))
        })?
    }

    /// What scoring says of a stored lead in a campaign (its name as the pipeline has it) as
    /// the dialer claims it: score, band, configuration version, the predictive probability and
    /// the campaign's shadow score.
    pub fn at_claim(&self, id: &str, campaign: &str) -> Option<AtClaim> {
        let pipeline = self.pipeline();
        let campaign = &pipeline.campaigns[pipeline.campaign(campaign)?];
        self.index.read(id, |entry| {
            let &(_, score, band) = entry.campaigns.iter().find(|(c, ..)| *c == campaign.name)?;
            let scorer = |name: &str| entry.scorer_names.iter().position(|n| &**n == name).map(|i| entry.scorers[i]);
            // A shadow weighs the pipeline's plugins; an entry of an older pipeline has none.
            let current = Arc::ptr_eq(&entry.scorer_names, &pipeline.names);
            let shadow = current.then(|| campaign.shadow_score(&entry.scorers, &entry.points)).flatten();
            Some(AtClaim {
                config_version: entry.config_version,
                score,
                band: band as u8,
                probability: scorer("predictive").filter(|s| !s.is_nan()).map(|s| s / 100.0),
                shadow: shadow.map(|(score, band)| (score, band as u8)),
            })
        })?
    }

    /// The score in a campaign (its name as the pipeline has it) of the account a lead names,
    /// for filters and routing conditions: `None` at once when none reads it, since the dialer
    /// asks for every lead it places.
    pub fn account_score(&self, id: &str, campaign: &str) -> Option<f64> {
        if !self.pipeline.read().reads_account_score {
            return None;
        }
        self.index.account_score(id, campaign)
    }

    /// The account a stored lead names, with its score in a campaign and its best leads.
    pub fn account_of(&self, id: &str, campaign: &str, leads: usize) -> Result<Option<AccountScore>, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = pipeline.campaign_or_error("campaign", campaign)?;
        Ok(self.index.account_of(id, &pipeline.campaigns[campaign].name, leads))
    }

    /// How many accounts each campaign has.
    pub fn account_counts(&self) -> Vec<(Arc<str>, usize)> {
        self.index.account_counts()
    }

    /// A campaign's accounts, best first, each with up to `leads` of its best leads.
    pub fn top_accounts(&self, campaign: &str, limit: usize, leads: usize) -> Result<Vec<AccountScore>, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = pipeline.campaign_or_error("campaign", campaign)?;
        Ok(self.index.top_accounts(&pipeline.campaigns[campaign].name, limit, leads).unwrap_or_default())
    }

    /// Every account's share of the leads here in a campaign (or only `only`'s), deep enough to
    /// list `leads` of its best when the shares of every shard are put together
    /// (`top_of_shares`).
    pub fn account_shares(
        &self,
        campaign: &str,
        leads: usize,
        only: Option<&str>,
    ) -> Result<Vec<AccountShare>, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = &pipeline.campaigns[pipeline.campaign_or_error("campaign", campaign)?];
        let depth = accounts::share_depth(&campaign.account, leads);
        Ok(self.index.account_shares(&campaign.name, depth, only).unwrap_or_default())
    }

    /// On a cluster, per campaign that has accounts: its name, how many best leads a share
    /// keeps, and every account's share of the leads here. Nothing when no filter or routing
    /// rule reads `account.score`, the only reader of the other shards' shares.
    pub fn shares_to_publish(&self) -> Vec<(Arc<str>, usize, Vec<AccountShare>)> {
        let pipeline = self.pipeline();
        if !pipeline.reads_account_score {
            return Vec::new();
        }
        let campaigns = pipeline.campaigns.iter().map(|campaign| {
            let depth = accounts::share_depth(&campaign.account, 0);
            let shares = self.index.account_shares(&campaign.name, depth, None).unwrap_or_default();
            (campaign.name.clone(), depth, shares)
        });
        campaigns.collect()
    }

    /// On a cluster, what the other shards' leads give each account in a campaign, so that
    /// `account.score` here reads the whole account; the leads here whose account's score
    /// moved, for the dialer to requeue.
    pub fn set_accounts_elsewhere(
        &self,
        campaign: &str,
        elsewhere: HashMap<CompactString, AccountShare>,
    ) -> Vec<LeadId> {
        self.index.set_accounts_elsewhere(campaign, elsewhere)
    }

    /// The best `limit` accounts of a campaign made from every shard's shares, as `top_accounts`
    /// over all their leads gives them.
    pub fn top_of_shares(
        &self,
        campaign: &str,
        shares: Vec<AccountShare>,
        limit: usize,
        leads: usize,
    ) -> Result<Vec<AccountScore>, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = &pipeline.campaigns[pipeline.campaign_or_error("campaign", campaign)?];
        Ok(accounts::top_of_shares(&campaign.account, &campaign.bands, shares, limit, leads))
    }

    /// How a campaign's stored leads score, in `bins` bins.
    pub fn distribution(&self, campaign: &str, bins: usize, top: Option<f64>) -> Result<Distribution, ScoreError> {
        let pipeline = self.pipeline();
        let campaign = &pipeline.campaigns[pipeline.campaign_or_error("campaign", campaign)?];
        let distribution = distribution::of(&self.index, &campaign.name, campaign.composition, bins, top);
        let new_hot = self.new_hot(&pipeline, campaign);
        Ok(Distribution { thresholds: campaign.bands, new_hot, ..distribution })
    }

    /// The campaign's leads hot now that turned hot within the last day and the last seven, by
    /// their score histories; the hot are the top of the ranking, so only they are read.
    fn new_hot(&self, pipeline: &Pipeline, campaign: &Campaign) -> [u64; 2] {
        const DAY_MS: i64 = 86_400_000;
        let now = self.clock.now_ms();
        let bound = pipeline.config.scoring.history;
        let mut counts = [0; 2];
        let mut after: Option<(f64, LeadId)> = None;
        loop {
            let page = self.index.top(&campaign.name, after.as_ref().map(|(s, id)| (*s, id)), 256).unwrap_or_default();
            for (id, score) in &page {
                if Band::of(*score, &campaign.bands) != Band::Hot {
                    return counts;
                }
                let history = self.store.history(id).unwrap_or_default();
                if let Some(at) = distribution::turned_hot_at(&history, &campaign.name, bound) {
                    counts[0] += u64::from(at > now - DAY_MS);
                    counts[1] += u64::from(at > now - 7 * DAY_MS);
                }
            }
            match page.last() {
                Some((id, score)) => after = Some((*score, id.clone())),
                None => return counts,
            }
        }
    }

    /// Every lead a campaign scores, best first.
    pub fn ranked(&self, campaign: &str) -> Vec<(LeadId, f64)> {
        self.index.top(campaign, None, usize::MAX).unwrap_or_default()
    }

    /// How many leads have a score.
    pub fn scored(&self) -> usize {
        self.index.len()
    }
}

/// A ranked lead's score as the index holds it, with weights from the current pipeline.
pub(super) fn from_entry(
    pipeline: &Pipeline,
    campaign: usize,
    id: &LeadId,
    entry: &Entry,
    score: f64,
    band: Band,
) -> LeadScore {
    let Campaign { name, composition, weights, .. } = &pipeline.campaigns[campaign];
    let weight_of = |name: &Arc<str>| pipeline.names.iter().position(|n| n == name).map_or(0.0, |p| weights[p]);
    let parts: Vec<Part> = (0..entry.scorer_names.len())
        .map(|i| Part { weight: weight_of(&entry.scorer_names[i]), score: entry.scorers[i], points: entry.points[i] })
        .collect();
    let shares = pipeline::shares(*composition, &parts);
    let scorers = parts
        .iter()
        .enumerate()
        .filter(|(_, part)| !part.score.is_nan())
        .map(|(i, part)| ScorerScore {
            scorer: entry.scorer_names[i].clone(),
            score: part.score,
            points: part.points,
            weight: part.weight,
            contribution: shares[i],
            factors: Vec::new(),
        })
        .collect();
    LeadScore {
        lead_id: id.clone(),
        campaign: name.clone(),
        score,
        band,
        grade: grade_of(&entry.scorer_names, &entry.scorers),
        scorers,
        config_version: entry.config_version,
        scored_at_ms: entry.scored_at_ms,
        account: None,
    }
}

pub(super) fn grade_of(names: &[Arc<str>], scorers: &[f64]) -> String {
    let score = |wanted: &str| names.iter().position(|n| &**n == wanted).map(|p| scorers[p]).filter(|s| !s.is_nan());
    grade(score("fit"), score("engagement"))
}

pub(super) fn attribute_matches(matcher: &AttributeMatch, value: &Value) -> bool {
    match (matcher, value) {
        (AttributeMatch::Equals(Value::Text(want)), Value::Text(text)) => want.eq_ignore_ascii_case(text),
        // As a person types it: "640" finds the number 640.
        (AttributeMatch::Equals(Value::Text(want)), Value::Number(n)) => want.trim().parse::<f64>() == Ok(*n),
        (AttributeMatch::Equals(want), value) => want == value,
        (AttributeMatch::Range { min, max }, Value::Number(n)) => {
            min.is_none_or(|min| *n >= min) && max.is_none_or(|max| *n <= max)
        }
        (AttributeMatch::Range { .. }, _) => false,
    }
}
