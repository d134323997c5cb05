//! `ScoringService`'s messages: inline leads, top-lead and account queries checked; scores,
//! histories and distributions out.

use crate::api::dialer::convert::estimate_out;
use crate::api::fields::*;
use crate::api::lead::convert::{event_input, lead_input};
use leadscore_proto::v1 as pb;
use leadscore_services::dialer::contact_rates::Estimate;
use leadscore_services::dialer::standing::{Listed, Standing};
use leadscore_services::scoring::card::Card;
use leadscore_services::scoring::distribution::{BANDS, Distribution};
use leadscore_services::scoring::pipeline::Band;
use leadscore_services::scoring::{AccountScore, AttributeMatch, LeadScore, TopQuery};
use leadscore_store::Sym;
use leadscore_store::history::{Cause, ScoreChange};
use leadscore_store::mutation::{EventInput, LeadInput};
use std::fmt;

/// A lead given inline for scoring, with its events. `field` prefixes the field names (empty,
/// or `requests[3].` in a batch). An event's `lead_id` may be left empty; otherwise it must
/// name the lead.
pub fn inline_lead(
    field: &(impl fmt::Display + ?Sized),
    request: &pb::ScoreRequest,
    max_events: usize,
    now_ms: i64,
) -> Result<(LeadInput, Vec<EventInput>)> {
    let Some(lead) = &request.lead else { return fail(at(field, "lead"), "is required") };
    let input = lead_input(&at(field, "lead"), lead)?;
    if request.events.len() > max_events {
        return fail(at(field, "events"), format!("at most {max_events} allowed, got {}", request.events.len()));
    }
    let events = request
        .events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let events = at(field, "events");
            let field = at(&events, Index(i));
            if !event.lead_id.is_empty() && event.lead_id != lead.id {
                return fail(
                    at(&field, ".lead_id"),
                    format!("must be empty or {:?}, got {:?}", lead.id, event.lead_id),
                );
            }
            event_input(&field, event, Some(&input.id), now_ms)
        })
        .collect::<Result<_>>()?;
    Ok((input, events))
}

/// The most leads one `TopLeads` call streams.
pub const MAX_TOP_LEADS: u32 = 10_000;

/// A `TopAccounts` request: the campaign, how many accounts and how many leads of each.
pub fn top_accounts(request: &pb::TopAccountsRequest) -> Result<(String, usize, usize)> {
    if !(1..=MAX_TOP_LEADS).contains(&request.limit) {
        return fail("limit", format!("must be 1-{MAX_TOP_LEADS}, got {}", request.limit));
    }
    let leads = match request.leads_per_account {
        0 => DEFAULT_LEADS_PER_ACCOUNT,
        n @ 1..=100 => n as usize,
        n => return fail("leads_per_account", format!("must be 0-100, got {n}")),
    };
    Ok((request.campaign.clone(), request.limit as usize, leads))
}

/// The campaign and bin count of a `ScoreDistribution` request.
pub fn distribution(request: &pb::ScoreDistributionRequest) -> Result<(String, usize)> {
    let bins = match request.bins {
        0 => DEFAULT_BINS,
        n @ 1..=1000 => n as usize,
        n => return fail("bins", format!("must be 0-1000, got {n}")),
    };
    Ok((request.campaign.clone(), bins))
}

/// Histogram bins when a `ScoreDistribution` request does not say.
const DEFAULT_BINS: usize = 20;

pub fn distribution_out(d: Distribution) -> pb::ScoreDistributionResponse {
    let band_counts = |counts: [u64; 4]| counts.to_vec();
    pb::ScoreDistributionResponse {
        campaign: d.campaign.to_string(),
        leads: d.leads,
        bins: d
            .bins
            .into_iter()
            .map(|bin| pb::DistributionBin { low: bin.low, high: bin.high, by_band: band_counts(bin.by_band) })
            .collect(),
        bands: BANDS
            .iter()
            .zip(d.by_band)
            .map(|(&band, leads)| pb::BandCount { band: band_out(Some(band)).into(), leads })
            .collect(),
        grades: d.by_grade.into_iter().map(|(grade, leads)| pb::GradeCount { grade, leads }).collect(),
        thresholds: Some(pb::BandThresholds {
            warm: d.thresholds.warm,
            sales_ready: d.thresholds.sales_ready,
            hot: d.thresholds.hot,
        }),
        without_points: d.without_points,
        new_hot_last_day: d.new_hot[0],
        new_hot_last_week: d.new_hot[1],
    }
}

/// Leads shown per account when a `TopAccounts` request does not say.
const DEFAULT_LEADS_PER_ACCOUNT: usize = 3;

pub fn top_query(request: &pb::TopLeadsRequest) -> Result<TopQuery> {
    if !(1..=MAX_TOP_LEADS).contains(&request.limit) {
        return fail("limit", format!("must be 1-{MAX_TOP_LEADS}, got {}", request.limit));
    }
    let bands = bands_in("bands", &request.bands)?;
    let filters = request
        .filters
        .iter()
        .enumerate()
        .map(|(i, filter)| {
            let field = format!("filters[{i}]");
            let attribute = name(&at(&field, ".attribute"), &filter.attribute)?;
            let matcher = match &filter.r#match {
                None => return fail(at(&field, ".match"), "must be equals or range"),
                Some(pb::attribute_filter::Match::Equals(v)) => {
                    AttributeMatch::Equals(value(&at(&field, ".equals"), v)?)
                }
                Some(pb::attribute_filter::Match::Range(range)) => {
                    let (min, max) = (range.min, range.max);
                    if min.is_some_and(|m| !m.is_finite()) || max.is_some_and(|m| !m.is_finite()) {
                        return fail(at(&field, ".range"), "bounds must be finite");
                    }
                    if let (Some(min), Some(max)) = (min, max)
                        && min > max
                    {
                        return fail(at(&field, ".range"), format!("min must not exceed max, got {min} > {max}"));
                    }
                    AttributeMatch::Range { min, max }
                }
            };
            Ok((attribute, matcher))
        })
        .collect::<Result<_>>()?;
    Ok(TopQuery {
        campaign: request.campaign.clone(),
        limit: request.limit as usize,
        bands,
        filters,
        explain: request.explain,
        callable_now: request.callable_now,
        exclude_finished: request.exclude_finished,
        search: match request.search.trim() {
            search if search.len() > 100 => {
                return fail("search", format!("must be at most 100 bytes, got {}", search.len()));
            }
            search => search.to_lowercase(),
        },
    })
}

/// A `WatchTopLeads` request: as `TopLeads` takes it, with at most `max` leads, and without
/// what a watched list cannot keep current.
pub fn watch_query(request: &pb::TopLeadsRequest, max: usize) -> Result<TopQuery> {
    if request.callable_now {
        return fail(
            "callable_now",
            "a watched list cannot follow calling windows as they open and shut; use TopLeads",
        );
    }
    if request.limit as usize > max {
        return fail("limit", format!("must be 1-{max} to watch, got {}", request.limit));
    }
    top_query(request)
}

/// A ranked lead with where it stands with the dialer and who it is; the rank is set by
/// whoever merges.
pub fn ranked_out(listed: Listed) -> pb::RankedLead {
    pb::RankedLead {
        rank: 0,
        score: Some(score_out(listed.score)),
        dialing: listed.standing.map(standing_out),
        card: listed.card.map(card_out),
    }
}

pub fn card_out(card: Card) -> pb::LeadCard {
    pb::LeadCard {
        display: card
            .display
            .into_iter()
            .map(|(name, value)| pb::DisplayAttribute { name: name.to_string(), value })
            .collect(),
        phone: card.phone,
        owner: card.owner,
    }
}

fn standing_out(standing: Standing) -> pb::DialingState {
    pb::DialingState {
        attempts: standing.attempts,
        last_outcome: standing.last_call.map(|(result, _)| result.name().to_string()).unwrap_or_default(),
        last_called_at: standing.last_call.map(|(_, at)| timestamp_from_ms(at)),
        callable_now: standing.callable_now,
        next_callable_at: standing.next_callable_ms.map(timestamp_from_ms),
        reason: standing.reason.map(|r| r.name().to_string()).unwrap_or_default(),
        local_time: standing.local_time,
        time_zone: standing.zone.name().to_string(),
        finished: standing.finished,
    }
}

/// A history entry as the API shows it; `kind_name` names an event kind.
pub fn change_out(change: ScoreChange, kind_name: impl Fn(Sym) -> String) -> pb::ScoreChange {
    use pb::score_change::Cause as Out;
    let cause = match change.cause {
        Cause::Event { kind, fingerprint } => {
            Out::Event(pb::EventCause { kind: kind_name(kind), id_fingerprint: fingerprint })
        }
        Cause::Upsert => Out::Upsert(true),
        Cause::Config { version } => Out::ConfigVersion(version),
        Cause::Decay => Out::Decay(true),
        Cause::Reload => Out::ModelReload(true),
    };
    pb::ScoreChange {
        at: Some(timestamp_from_ms(change.at_ms)),
        campaign: str::to_owned(&change.campaign),
        score: change.score,
        band: band_out(Band::from_rank(change.band)).into(),
        cause: Some(cause),
    }
}

pub fn score_out(score: LeadScore) -> pb::LeadScore {
    pb::LeadScore {
        lead_id: str::to_owned(&score.lead_id),
        campaign: str::to_owned(&score.campaign),
        score: score.score,
        band: band_out(Some(score.band)).into(),
        grade: score.grade,
        scorers: score
            .scorers
            .into_iter()
            .map(|s| pb::ScorerScore {
                scorer: str::to_owned(&s.scorer),
                score: s.score,
                points: s.points,
                weight: s.weight,
                contribution: s.contribution,
                top_factors: s
                    .factors
                    .into_iter()
                    .map(|f| pb::Factor { feature: f.feature, contribution: f.contribution, detail: f.detail })
                    .collect(),
            })
            .collect(),
        config_version: score.config_version,
        scored_at: Some(timestamp_from_ms(score.scored_at_ms)),
        account: score.account.map(account_out),
    }
}

pub fn account_out(account: AccountScore) -> pb::AccountScore {
    pb::AccountScore {
        account: str::to_owned(&account.account),
        score: account.score,
        band: band_out(Some(account.band)).into(),
        leads: account.leads as u32,
        top_leads: account
            .top_leads
            .into_iter()
            .map(|(id, score, band)| pb::AccountLead {
                lead_id: str::to_owned(&id),
                score,
                band: band_out(Some(band)).into(),
            })
            .collect(),
    }
}

/// A lead's contact rate at each local hour of the week.
pub fn curve_out(curve: &[Estimate]) -> Vec<pb::ContactRate> {
    curve.iter().enumerate().map(|(hour, e)| estimate_out(hour, e)).collect()
}
