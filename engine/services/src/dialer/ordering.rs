//! In what order a campaign's callable leads are offered (`[campaigns.<c>.dialing]`): by score,
//! or by expected value now, P(contact now) × P(conversion | contact) × worth; and new leads
//! first for the campaign's `speed_to_lead`.
//!
//! A queue group's leads share a calling window and, under `expected_value`, a contact-rate
//! segment: at any instant they share P(contact now). So each lead's key in its group is what
//! does not change by the hour, P(conversion | contact) × worth, and a claim weighs each
//! group's best by the group's contact rate now. A lead's own history of answering adjusts
//! its explanation, not its place.

use super::Dialer;
use super::contact_rates::{hour_of_week, worth};
use super::eligibility::Locale;
use super::queue::Rank;
use crate::generation::CampaignRules;
use leadscore_config::DialingOrder;
use leadscore_store::lead::LeadId;

impl Dialer {
    /// A lead's rank in its campaign's queue, from its score.
    pub(super) fn rank_of(&self, campaign: &CampaignRules, id: &LeadId, score: f64, now: i64) -> Rank {
        let order = &campaign.order;
        let needs_lead = order.speed_to_lead_ms > 0 || order.by == DialingOrder::ExpectedValue && order.value.is_some();
        let (created_at_ms, worth) = match needs_lead {
            true => self
                .store
                .read_lead(id, |lead| {
                    let value = order.value.as_ref().and_then(|name| self.store.attribute(lead, name));
                    (lead.created_at_ms, worth(order, &value))
                })
                .unwrap_or((i64::MIN, 1.0)),
            false => (i64::MIN, 1.0),
        };
        let key = match order.by {
            DialingOrder::Score => score,
            DialingOrder::ExpectedValue => self.conversion(campaign, id, score) * worth,
        };
        let new_until = created_at_ms.saturating_add(order.speed_to_lead_ms);
        let new = order.speed_to_lead_ms > 0
            && new_until > now
            && self.store.read_dial(id, |dial| dial.attempts.is_empty()).unwrap_or(true);
        Rank { score, key, new_until: new.then_some(new_until) }
    }

    /// P(conversion | contact): the predictive scorer's probability, or where the campaign has
    /// none, its score as a share of 100.
    pub(super) fn conversion(&self, campaign: &CampaignRules, id: &LeadId, score: f64) -> f64 {
        let probability = self.scoring.at_claim(id, &campaign.name).and_then(|at| at.probability);
        probability.unwrap_or((score / 100.0).clamp(0.0, 1.0))
    }

    /// What weighs a queue group's keys now: its contact rate under `expected_value`, else 1.
    pub(super) fn contact_weight(&self, campaign: &CampaignRules, locale: &Locale, now: i64) -> f64 {
        if campaign.order.by != DialingOrder::ExpectedValue {
            return 1.0;
        }
        let hour = hour_of_week(locale.zone, now);
        let prior = campaign.order.prior_calls;
        self.contact_rates.read(&campaign.name, |grid| grid.estimate(locale.segment.as_deref(), hour, prior).rate)
    }
}
