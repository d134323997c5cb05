//! `DialerService`'s messages: outcomes checked; claims, revocations and wallboards out.

use crate::api::fields::*;
use leadscore_config::DialingOrder;
use leadscore_proto::prost_types::Duration;
use leadscore_proto::v1 as pb;
use leadscore_services::dialer::contact_rates::{self, ABANDON_LIMIT, HOURS, Outlook, Rates, Tally, hour_name};
use leadscore_services::dialer::eligibility::Reason;
use leadscore_services::dialer::floor::{Wallboard, median};
use leadscore_services::dialer::revocations::{Revoked, Why};
use leadscore_services::dialer::{Claimed, Dry, Pick, Report};
use leadscore_store::agents::Presence;
use leadscore_store::dial::CallResult;
use std::fmt;

/// A call's disposition as a dialer reported it, checked.
pub fn outcome_in(field: &(impl fmt::Display + ?Sized), outcome: Option<&pb::Outcome>, now_ms: i64) -> Result<Report> {
    let Some(outcome) = outcome else { return fail(field, "required") };
    let at = |name: &str| format!("{field}.{name}");
    if outcome.lease_id.is_empty() {
        return fail(at("lease_id"), "required");
    }
    let result = match pb::CallResult::try_from(outcome.result) {
        Ok(pb::CallResult::Unspecified) | Err(_) => {
            return fail(at("result"), format!("must name a call result, got {}", outcome.result));
        }
        Ok(pb::CallResult::NoAnswer) => CallResult::NoAnswer,
        Ok(pb::CallResult::Busy) => CallResult::Busy,
        Ok(pb::CallResult::Voicemail) => CallResult::Voicemail,
        Ok(pb::CallResult::ConnectedNotInterested) => CallResult::ConnectedNotInterested,
        Ok(pb::CallResult::Callback) => CallResult::Callback,
        Ok(pb::CallResult::Converted) => CallResult::Converted,
        Ok(pb::CallResult::Lost) => CallResult::Lost,
        Ok(pb::CallResult::WrongNumber) => CallResult::WrongNumber,
        Ok(pb::CallResult::DoNotCall) => CallResult::DoNotCall,
        Ok(pb::CallResult::Abandoned) => CallResult::Abandoned,
    };
    let callback = match (result, outcome.callback_at.as_ref()) {
        (CallResult::Callback, None) => return fail(at("callback_at"), "required for CALL_RESULT_CALLBACK"),
        (CallResult::Callback, Some(when)) => {
            let ms = when
                .seconds
                .saturating_mul(1000)
                .saturating_add(i64::from(when.nanos.clamp(0, 999_999_999) / 1_000_000));
            if !(now_ms..=now_ms + MAX_CALLBACK_AHEAD_MS).contains(&ms) {
                return fail(at("callback_at"), "must lie between now and a year from now");
            }
            Some((ms, outcome.agent_only_callback))
        }
        (_, Some(_)) => return fail(at("callback_at"), "only allowed with CALL_RESULT_CALLBACK"),
        (_, None) => None,
    };
    let talk_ms = match outcome.talk_time {
        None => 0,
        Some(d) if d.seconds >= 0 && (0..1_000_000_000).contains(&d.nanos) => {
            (d.seconds as u64).saturating_mul(1000) + d.nanos as u64 / 1_000_000
        }
        Some(_) => return fail(at("talk_time"), "must not be negative"),
    };
    if outcome.note.len() > MAX_NOTE_BYTES {
        return fail(at("note"), format!("must be at most {MAX_NOTE_BYTES} bytes, got {}", outcome.note.len()));
    }
    Ok(Report {
        lease_id: outcome.lease_id.clone(),
        result,
        at_ms: timestamp(&at("at"), outcome.at.as_ref(), now_ms)?,
        callback,
        talk_ms,
        note: outcome.note.clone(),
    })
}

/// A claim as the dialer receives it: the lease, the lead, its score and why it was chosen.
pub fn claim_out(claimed: &Claimed, lead: Option<pb::Lead>, score: Option<pb::LeadScore>) -> pb::Claim {
    let lease = &claimed.lease;
    pb::Claim {
        lease: Some(pb::Lease {
            lease_id: leadscore_services::dialer::lease_id(lease.id, &claimed.lead_id),
            lead_id: str::to_owned(&claimed.lead_id),
            agent_id: str::to_owned(&lease.agent),
            campaign: str::to_owned(&lease.campaign),
            expires_at: Some(timestamp_from_ms(lease.expires_at_ms)),
        }),
        lead,
        score,
        reason: match claimed.pick {
            Pick::BestScore => pb::ClaimReason::BestScore,
            Pick::AgentCallback => pb::ClaimReason::AgentCallback,
            Pick::Callback => pb::ClaimReason::Callback,
        }
        .into(),
        attempts: claimed.attempts,
        local_time: claimed.local_time.clone(),
        dial_by: Some(timestamp_from_ms(claimed.dial_by_ms)),
        dial_by_local: claimed.dial_by_local.clone(),
        ..Default::default()
    }
}

/// Says why a full claim chose its lead: how it was picked, among how many, and the lead's
/// chance of being reached now and its expected value.
pub fn explain_claim(claim: &mut pb::Claim, claimed: &Claimed, outlook: Option<Outlook>, callable: u64) {
    use std::fmt::Write;
    // One string written in place: this runs for every claim.
    let why = &mut claim.why;
    why.clear();
    let _ = match (claimed.pick, outlook.as_ref().map(|o| o.order)) {
        (Pick::AgentCallback, _) => write!(why, "a callback it asked of this agent, due now"),
        (Pick::Callback, _) => write!(why, "a callback it asked for, due now"),
        (Pick::BestScore, Some(DialingOrder::ExpectedValue)) => write!(why, "best expected value"),
        (Pick::BestScore, _) => write!(why, "best score {:.1}", claimed.score),
    };
    let _ = write!(why, ", first of {} callable", thousands(callable));
    claim.callable = callable;
    if let Some(outlook) = outlook {
        let _ = write!(claim.why, "; {}", outlook.describe());
        claim.expected_value = outlook.expected_value;
        claim.contact_rate = Some(estimate_out(outlook.hour, &outlook.estimate));
    }
}

/// 3102 as "3,102".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Revocations by reason, in `Why::ALL` order.
pub fn revocation_counts(counts: [u64; Why::ALL.len()]) -> pb::RevocationCounts {
    let [do_not_call, consent_withdrawn, objected, erased, window_closed] = counts;
    pb::RevocationCounts { do_not_call, consent_withdrawn, objected, erased, window_closed }
}

pub fn revoked_out(revoked: &Revoked) -> pb::Revoked {
    pb::Revoked {
        lease_id: leadscore_services::dialer::lease_id(revoked.lease, &revoked.lead_id),
        lead_id: revoked.lead_id.to_string(),
        reason: match revoked.why {
            Why::DoNotCall => pb::RevokeReason::DoNotCall,
            Why::ConsentWithdrawn => pb::RevokeReason::ConsentWithdrawn,
            Why::Objected => pb::RevokeReason::Objected,
            Why::Erased => pb::RevokeReason::Erased,
            Why::WindowClosed => pb::RevokeReason::WindowClosed,
        }
        .into(),
        at: Some(timestamp_from_ms(revoked.at_ms)),
    }
}

/// Why nothing could be claimed, as counts by reason.
/// Sets a board's speed to lead from its minutes' first calls.
pub fn with_speed_to_lead(mut board: pb::WallboardResponse) -> pb::WallboardResponse {
    let delays = board.minutes.iter().flat_map(|m| m.first_call_seconds.iter().copied()).collect();
    let median = median(delays);
    board.median_first_call = median.map(|(seconds, _)| Duration { seconds: i64::from(seconds), nanos: 0 });
    board.first_calls = median.map_or(0, |(_, count)| count as u32);
    board
}

/// Answered and abandoned calls, with their rate against the limit.
pub fn abandonment_out((answered, abandoned): (u64, u64)) -> pb::Abandonment {
    let rate = if answered == 0 { 0.0 } else { abandoned as f64 / answered as f64 };
    pb::Abandonment { answered, abandoned, rate, limit: ABANDON_LIMIT, over_limit: rate > ABANDON_LIMIT }
}

pub fn wallboard_out(board: Wallboard) -> pb::WallboardResponse {
    let state = |presence| match presence {
        Presence::Available => pb::AgentState::Available,
        Presence::Busy => pb::AgentState::Busy,
        Presence::Offline => pb::AgentState::Offline,
    };
    with_speed_to_lead(pb::WallboardResponse {
        campaign: board.campaign.to_string(),
        queued: board.queued,
        callable: board.callable,
        to_no_agent: board.to_no_agent,
        ineligible: Some(dry_out(&board.ineligible)),
        callbacks_due: board.callbacks_due.0,
        oldest_callback_due: board.callbacks_due.1.map(timestamp_from_ms),
        routing_queues: board
            .routing_queues
            .into_iter()
            .map(|q| pb::RoutingQueue {
                queue: q.queue.into(),
                waiting: q.waiting,
                oldest_since: q.oldest_since_ms.map(timestamp_from_ms),
            })
            .collect(),
        zones: board
            .zones
            .into_iter()
            .map(|z| pb::ZoneQueue {
                time_zone: z.zone.name().into(),
                region: z.region.map(String::from).unwrap_or_default(),
                callable: z.callable,
                to_no_agent: z.to_no_agent,
                open: z.open,
                changes_at: (z.changes_at_ms != i64::MAX).then(|| timestamp_from_ms(z.changes_at_ms)),
            })
            .collect(),
        minutes: board
            .minutes
            .into_iter()
            .map(|m| pb::MinuteCounts {
                start: Some(timestamp_from_ms(m.start_ms)),
                claims: m.claims,
                outcomes: m.outcomes.to_vec(),
                revoked: Some(revocation_counts(m.revoked)),
                first_call_seconds: m.first_calls.clone(),
                talk_ms: m.talk_ms,
                talked: m.talked,
            })
            .collect(),
        agents: board
            .agents
            .into_iter()
            .map(|a| pb::AgentBoard {
                agent_id: a.id.into(),
                name: a.name.into(),
                state: state(a.presence).into(),
                leases: a.leases,
                decided: a.decided,
                converted: a.converted,
                since: Some(timestamp_from_ms(a.since_ms)),
            })
            .collect(),
        abandonment: Some(abandonment_out(board.abandonment)),
        ..Default::default()
    })
}

pub fn dry_out(dry: &Dry) -> pb::IneligibleCounts {
    let count = |reason: Reason| dry.counts[reason.index()];
    pb::IneligibleCounts {
        outside_calling_window: count(Reason::OutsideWindow),
        recycling: count(Reason::Recycling),
        max_attempts: count(Reason::MaxAttempts),
        do_not_call: count(Reason::DoNotCall),
        missing_consent: count(Reason::MissingConsent),
        leased: count(Reason::Leased),
        filtered_out: count(Reason::FilteredOut),
        holiday: count(Reason::Holiday),
        not_routable_to_agent: count(Reason::Reserved),
        finished: count(Reason::Finished),
        held_for_better_hour: count(Reason::BetterHour),
        no_phone: count(Reason::NoPhone),
    }
}

/// The span a wallboard covers: 60 minutes unless asked, at most a day.
pub(in crate::api) fn wallboard_minutes(minutes: u32) -> Result<usize> {
    match minutes {
        0 => Ok(60),
        n @ 1..=1440 => Ok(n as usize),
        n => fail("minutes", format!("must be 0-1440, got {n}")),
    }
}

/// The lease a `ReleaseLead` names.
pub(in crate::api) fn lease_id(lease_id: String) -> Result<String> {
    if lease_id.is_empty() {
        return fail("lease_id", "required");
    }
    Ok(lease_id)
}

/// A campaign's contact rates as the API shows them, each estimate made from its counts.
pub fn rates_out(rates: &Rates, segment: &str) -> pb::ContactRatesResponse {
    let hours = (0..HOURS).map(|hour| {
        let (all, own) = rates.hours[hour];
        let own = own.unwrap_or(all);
        rate_out(hour, rates.estimate(hour), own, all)
    });
    let overall = contact_rates::overall(rates.overall, rates.prior);
    pb::ContactRatesResponse {
        campaign: rates.campaign.to_string(),
        segment: segment.to_string(),
        overall: Some(pb::ContactRate {
            rate: overall.rate,
            low: overall.low,
            high: overall.high,
            calls: rates.overall.calls,
            contacts: rates.overall.contacts,
            all_calls: rates.overall.calls,
            all_contacts: rates.overall.contacts,
            ..Default::default()
        }),
        hours: hours.collect(),
        segments: rates
            .segments
            .iter()
            .map(|(name, t)| pb::SegmentCalls { segment: name.to_string(), calls: t.calls, contacts: t.contacts })
            .collect(),
        prior_calls: rates.prior,
    }
}

fn rate_out(hour: usize, estimate: contact_rates::Estimate, own: Tally, all: Tally) -> pb::ContactRate {
    pb::ContactRate {
        calls: own.calls,
        contacts: own.contacts,
        all_calls: all.calls,
        all_contacts: all.contacts,
        ..estimate_out(hour, &estimate)
    }
}

/// An estimate at a local hour of the week, with the calls it rests on.
pub fn estimate_out(hour: usize, e: &contact_rates::Estimate) -> pb::ContactRate {
    pb::ContactRate {
        hour_of_week: hour as u32,
        label: hour_name(hour),
        rate: e.rate,
        low: e.low,
        high: e.high,
        calls: e.calls,
        contacts: e.contacts,
        ..Default::default()
    }
}

/// The parts of a campaign's rates (a cluster's shards), as one: their counts added, the
/// estimates made again from them.
pub fn rates_in(parts: &[pb::ContactRatesResponse]) -> Option<pb::ContactRatesResponse> {
    let first = parts.first()?;
    let tally = |calls, contacts| Tally { calls, contacts };
    let segmented = !first.segment.is_empty();
    let mut rates = Rates {
        campaign: first.campaign.as_str().into(),
        prior: first.prior_calls,
        overall: Tally::default(),
        hours: vec![(Tally::default(), segmented.then(Tally::default)); HOURS],
        segments: Vec::new(),
    };
    for part in parts {
        let overall = part.overall.clone().unwrap_or_default();
        rates.overall = rates.overall.plus(tally(overall.calls, overall.contacts));
        for (hour, rate) in part.hours.iter().enumerate().take(HOURS) {
            let (all, own) = &mut rates.hours[hour];
            *all = all.plus(tally(rate.all_calls, rate.all_contacts));
            if let Some(own) = own {
                *own = own.plus(tally(rate.calls, rate.contacts));
            }
        }
        for segment in &part.segments {
            let counts = tally(segment.calls, segment.contacts);
            match rates.segments.iter_mut().find(|(name, _)| name == segment.segment.as_str()) {
                Some((_, total)) => *total = total.plus(counts),
                None => rates.segments.push((segment.segment.as_str().into(), counts)),
            }
        }
    }
    rates.segments.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then_with(|| a.0.cmp(&b.0)));
    Some(rates_out(&rates, &first.segment))
}
