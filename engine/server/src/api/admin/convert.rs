//! `AdminService`'s messages: audit queries checked; audit entries and validation out.

use crate::api::fields::*;
use leadscore_proto::v1 as pb;
use leadscore_services::scoring::pipeline::Band;
use leadscore_services::validation;
use leadscore_store::audit::{AuditEntry, AuditKind, Subject};
use leadscore_store::dial::AtClaim;

/// An `AuditLog` request: the time range (inclusive) and the kinds (all if empty).
pub fn audit_query(request: &pb::AuditLogRequest, now_ms: i64) -> Result<(i64, i64, Vec<AuditKind>)> {
    let from = request.from.as_ref().map(|at| timestamp("from", Some(at), now_ms)).transpose()?.unwrap_or(i64::MIN);
    let to = request.to.as_ref().map(|at| timestamp("to", Some(at), now_ms)).transpose()?.unwrap_or(i64::MAX);
    if from > to {
        return fail("to", "must not come before from");
    }
    let kinds = request
        .kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| match pb::AuditKind::try_from(*kind) {
            Ok(pb::AuditKind::ConfigChange) => Ok(AuditKind::ConfigChange),
            Ok(pb::AuditKind::PluginReload) => Ok(AuditKind::PluginReload),
            Ok(pb::AuditKind::Erasure) => Ok(AuditKind::Erasure),
            Ok(pb::AuditKind::Objection) => Ok(AuditKind::Objection),
            Ok(pb::AuditKind::AgentChange) => Ok(AuditKind::AgentChange),
            _ => fail(at("kinds", Index(i)), format!("must be a kind other than AUDIT_KIND_UNSPECIFIED, got {kind}")),
        })
        .collect::<Result<_>>()?;
    Ok((from, to, kinds))
}

pub fn audit_out(entry: AuditEntry) -> pb::AuditEntry {
    use pb::audit_entry::Subject as Out;
    let kind = match entry.kind {
        AuditKind::ConfigChange => pb::AuditKind::ConfigChange,
        AuditKind::PluginReload => pb::AuditKind::PluginReload,
        AuditKind::Erasure => pb::AuditKind::Erasure,
        AuditKind::Objection => pb::AuditKind::Objection,
        AuditKind::AgentChange => pb::AuditKind::AgentChange,
    };
    let subject = match entry.subject {
        Subject::Nothing => None,
        Subject::Lead(id) => Some(Out::LeadId(id.to_string())),
        Subject::ErasedLead(key) => Some(Out::ErasedLead(leadscore_config::tokens::hex(&key))),
        Subject::Agents(ids) => {
            Some(Out::Agents(pb::AgentIds { agent_ids: ids.iter().map(|id| id.to_string()).collect() }))
        }
    };
    pb::AuditEntry {
        at: Some(timestamp_from_ms(entry.at_ms)),
        actor: entry.actor.to_string(),
        kind: kind.into(),
        subject,
        detail: entry.detail,
    }
}

/// A called lead as `ClusterService.Observations` carries it between nodes.
pub fn observation_out(o: validation::Observation) -> pb::Observation {
    let at = o.at_claim;
    pb::Observation {
        lease: o.lease,
        config_version: at.config_version,
        score: at.score,
        band: at.band.into(),
        probability: at.probability,
        shadow_score: at.shadow.map(|(score, _)| score),
        shadow_band: at.shadow.map(|(_, band)| band.into()),
        converted: o.converted,
    }
}

/// A called lead from another node; a band beyond `u8` (no node sends one) counts as unqualified.
pub fn observation_in(o: pb::Observation) -> validation::Observation {
    let band = |rank: u32| u8::try_from(rank).unwrap_or(0);
    let at_claim = AtClaim {
        config_version: o.config_version,
        score: o.score,
        band: band(o.band),
        probability: o.probability,
        shadow: o.shadow_score.map(|score| (score, band(o.shadow_band.unwrap_or(0)))),
    };
    validation::Observation { lease: o.lease, at_claim, converted: o.converted }
}

pub fn section_out(section: validation::Section) -> pb::ValidationSection {
    let bucket = |b: &validation::Bucket| pb::ScoreBucket {
        leads: b.leads,
        conversions: b.conversions,
        conversion_rate: b.rate(),
        min_score: b.min_score,
        max_score: b.max_score,
    };
    let bands = [Band::Unqualified, Band::Warm, Band::SalesReady, Band::Hot];
    pb::ValidationSection {
        config_version: section.config_version,
        shadow: section.variant == validation::Variant::Shadow,
        all: Some(bucket(&section.all)),
        bands: bands
            .iter()
            .zip(&section.bands)
            .map(|(band, b)| pb::BandBucket { band: band_out(Some(*band)).into(), bucket: Some(bucket(b)) })
            .collect(),
        deciles: section.deciles.iter().map(bucket).collect(),
        top_decile_lift: section.top_decile_lift,
        roc_auc: section.roc_auc,
        calibration: section
            .calibration
            .iter()
            .map(|c| pb::CalibrationBucket {
                leads: c.leads,
                mean_probability: c.mean_probability,
                conversion_rate: c.conversion_rate,
            })
            .collect(),
    }
}
