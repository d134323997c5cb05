//! Where a lead stands with the dialer in a campaign, as a ranked list shows it: its calls so
//! far, whether an agent could claim it now, and if not, why and until when. It is judged by
//! the same rules as a claim, so "callable now" here is what `NextLead` would find.

use chrono::TimeZone;
use chrono_tz::Tz;

use super::Dialer;
use super::eligibility::{Reason, Verdict};
use crate::scoring::card::Card;
use crate::scoring::{LeadScore, ScoreError, TopQuery};
use leadscore_store::dial::{CallResult, Dial};
use leadscore_store::lead::LeadId;

#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    /// Calls made to the lead, in every campaign (the attempt limits count them all).
    pub attempts: u32,
    /// The latest call's outcome and when it was reported.
    pub last_call: Option<(CallResult, i64)>,
    /// Whether an agent could claim the lead now in the campaign.
    pub callable_now: bool,
    /// When it may next be called: now if callable; `None` if never, as things stand.
    pub next_callable_ms: Option<i64>,
    /// Why it may not be called now.
    pub reason: Option<Reason>,
    /// The latest call in the campaign ended with a final outcome.
    pub finished: bool,
    /// The zone its calling window is kept in, and its local time now (ISO 8601).
    pub zone: Tz,
    pub local_time: String,
}

/// A lead as a ranked list shows it: its score, where it stands with the dialer, and who it is.
#[derive(Clone, Debug)]
pub struct Listed {
    pub score: LeadScore,
    pub standing: Option<Standing>,
    pub card: Option<Card>,
}

/// The result of a lead's latest call in a campaign.
fn last_in(dial: &Dial, campaign: &str) -> Option<CallResult> {
    dial.attempts.iter().rev().find(|a| a.campaign == campaign).map(|a| a.result)
}

/// Whether a ranking query keeps leads by where they stand.
fn judges(query: &TopQuery) -> bool {
    query.callable_now || query.exclude_finished
}

/// Whether a ranking query keeps a lead that stands so.
fn keeps(query: &TopQuery, standing: Option<&Standing>) -> bool {
    standing.is_some_and(|s| (!query.callable_now || s.callable_now) && (!query.exclude_finished || !s.finished))
}

/// An outcome after which the campaign does not call the lead again.
pub fn is_final(result: CallResult) -> bool {
    matches!(result, CallResult::Converted | CallResult::Lost | CallResult::WrongNumber | CallResult::DoNotCall)
}

impl Dialer {
    /// The campaign's best leads as `Scoring::top` ranks them, with where each stands; only
    /// those callable now, or not finished, if the query asks.
    pub fn top(&self, query: &TopQuery) -> Result<Vec<Listed>, ScoreError> {
        // The standings the filter judged, kept for the answer.
        let judged = std::cell::RefCell::new(std::collections::HashMap::new());
        let keep = |id: &LeadId| {
            if !judges(query) {
                return true;
            }
            let standing = self.standing(&query.campaign, id);
            let kept = keeps(query, standing.as_ref());
            if kept {
                judged.borrow_mut().insert(id.clone(), standing);
            }
            kept
        };
        let top = self.scoring.top_where(query, &keep)?;
        let mut judged = judged.into_inner();
        Ok(top
            .into_iter()
            .map(|score| {
                let standing =
                    judged.remove(&score.lead_id).unwrap_or_else(|| self.standing(&query.campaign, &score.lead_id));
                self.listed(&query.campaign, score, standing)
            })
            .collect())
    }

    /// The ids and scores of `top`'s answer, without what lists them (where each stands, who
    /// it is, its factors): a cluster node ranks every shard's keys, then lists only the best.
    pub fn top_keys(&self, query: &TopQuery) -> Result<Vec<(LeadId, f64)>, ScoreError> {
        let keep = |id: &LeadId| !judges(query) || keeps(query, self.standing(&query.campaign, id).as_ref());
        self.scoring.top_keys(query, &keep)
    }

    /// `top`'s answer for the leads `chosen` names (from `top_keys`), in that order and at the
    /// scores they were ranked by; a lead no longer ranked is left out.
    pub fn listed_of(&self, query: &TopQuery, chosen: &[(LeadId, f64)]) -> Result<Vec<Listed>, ScoreError> {
        let scores = self.scoring.scores_at(query, chosen)?;
        let listed = scores.into_iter().map(|score| {
            let standing = self.standing(&query.campaign, &score.lead_id);
            self.listed(&query.campaign, score, standing)
        });
        Ok(listed.collect())
    }

    /// A ranked lead with who it is; `standing` as judged for it.
    pub fn listed(&self, campaign: &str, score: LeadScore, standing: Option<Standing>) -> Listed {
        let card = self.scoring.card(campaign, &score.lead_id);
        Listed { score, standing, card }
    }

    /// Whether a lead's latest call in a campaign ended with a final outcome.
    pub fn finished(&self, campaign: &str, id: &LeadId) -> bool {
        let generation = self.generations.current();
        let Some(campaign) = generation.campaign(campaign).map(|c| &generation.campaigns[c]) else { return false };
        self.store.read_dial(id, |dial| last_in(dial, &campaign.name).is_some_and(is_final)).unwrap_or(false)
    }

    /// Where a stored lead stands in a campaign now; `None` if either is unknown.
    pub fn standing(&self, campaign: &str, id: &LeadId) -> Option<Standing> {
        let now = self.clock.now_ms();
        let generation = self.generations.current();
        let campaign = &generation.campaigns[generation.campaign(campaign)?];
        let score = self.scoring.score_of(id, &campaign.name).map_or(0.0, |(score, _)| score);
        let (locale, verdict) = self.assess(&generation.routing, campaign, id, score, now)?;
        let (attempts, last_call, finished) = self
            .store
            .read_dial(id, |dial| {
                let last = dial.attempts.last().map(|a| (a.result, a.at_ms));
                (dial.attempts.len() as u32, last, last_in(dial, &campaign.name).is_some_and(is_final))
            })
            .unwrap_or_default();
        let window = campaign.rules.window_for(locale.region.as_deref());
        // The first instant from `at` at which the window lets a claim be made (`i64::MAX`
        // if it does not open within a year).
        let opening = |at: i64| match window.check(locale.zone, at) {
            Ok(_) => (at, None),
            Err((shut, opens)) => (opens, Some(Reason::from(shut))),
        };
        let (next, reason) = match verdict {
            Verdict::Ready(_) => {
                let (at, shut) = opening(now);
                (Some(at), shut)
            }
            Verdict::Wait { until_ms, reason } => (Some(opening(until_ms).0), Some(reason)),
            Verdict::Never(reason) => (None, Some(reason)),
        };
        let next_callable_ms = next.filter(|&at| at != i64::MAX);
        let local_time = locale.zone.timestamp_millis_opt(now).single().map(|t| t.to_rfc3339()).unwrap_or_default();
        Some(Standing {
            attempts,
            last_call,
            callable_now: reason.is_none(),
            next_callable_ms,
            reason,
            finished,
            zone: locale.zone,
            local_time,
        })
    }
}
