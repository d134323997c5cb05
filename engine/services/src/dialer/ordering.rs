//! In what order a campaign's callable leads are offered (`[campaigns.<c>.dialing]`): by score,
//! or by expected value now, P(contact now) × P(conversion | contact) × worth; and new leads
//! first for the campaign's `speed_to_lead`.
//!
//! A queue group's leads share a calling window and, under `expected_value`, a contact-rate
//! segment: at any instant they share P(contact now). So each lead's key in its group is what
//! does not change by the hour, P(conversion | contact) × worth, and a claim weighs each
//! group's best by the group's contact rate now. A lead's own history of answering adjusts
//! its explanation, not its place.

use chrono::{TimeZone, Timelike};

use super::Dialer;
use super::contact_rates::{hour_of_week, worth};
use super::eligibility::Locale;
use super::queue::Rank;
use crate::generation::CampaignRules;
use leadscore_config::DialingOrder;
use leadscore_store::lead::LeadId;

/// How much better a later hour's contact rate must be for a lead to wait for it.
const HOLD_GAIN: f64 = 1.25;
const HOUR_MS: i64 = 3_600_000;

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
    /// none, its score over 100 (past 1 for a points score above 100: it orders, unclamped, so
    /// that the best scores do not tie).
    pub(super) fn conversion(&self, campaign: &CampaignRules, id: &LeadId, score: f64) -> f64 {
        let probability = self.scoring.at_claim(id, &campaign.name).and_then(|at| at.probability);
        probability.unwrap_or(score.max(0.0) / 100.0)
    }

    /// What weighs a queue group's keys now: its contact rate under `expected_value`, else 1;
    /// `None` while the group waits for a better hour.
    pub(super) fn contact_weight(&self, campaign: &CampaignRules, locale: &Locale, now: i64) -> Option<f64> {
        if campaign.order.by != DialingOrder::ExpectedValue {
            return Some(1.0);
        }
        if self.held_until(campaign, locale, now).is_some() {
            return None;
        }
        let hour = hour_of_week(locale.zone, now);
        let prior = campaign.order.prior_calls;
        Some(self.contact_rates.read(&campaign.name, |grid| grid.estimate(locale.segment.as_deref(), hour, prior).rate))
    }

    /// Until when a queue group's leads wait for a better hour (`hold_for_better_hour`): the
    /// start of the first local hour, within the hold and before claims stop in today's
    /// window, at which their segment answers `HOLD_GAIN` times as often as now.
    pub(super) fn held_until(&self, campaign: &CampaignRules, locale: &Locale, now: i64) -> Option<i64> {
        let order = &campaign.order;
        if order.hold_ms == 0 || order.by != DialingOrder::ExpectedValue {
            return None;
        }
        let window = campaign.rules.window_for(locale.region.as_deref());
        // A shut window holds its leads anyway.
        window.check(locale.zone, now).ok()?;
        let horizon = (now + order.hold_ms).min(window.claims_stop_after(locale.zone, now));
        let local = locale.zone.timestamp_millis_opt(now).single()?;
        let into_hour = i64::from(local.minute() * 60 + local.second()) * 1000 + now.rem_euclid(1000);
        let prior = order.prior_calls;
        let segment = locale.segment.as_deref();
        self.contact_rates.read(&campaign.name, |grid| {
            let rate = |at: i64| grid.estimate(segment, hour_of_week(locale.zone, at), prior).rate;
            let then = rate(now) * HOLD_GAIN;
            (1..).map(|h| now - into_hour + h * HOUR_MS).take_while(|&at| at < horizon).find(|&at| rate(at) >= then)
        })
    }
}
