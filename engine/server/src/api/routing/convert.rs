//! `RoutingService`'s messages: agents checked into store input; decisions out.

use std::collections::HashSet;

use leadscore_proto::v1 as pb;

use crate::api::fields::*;
use crate::api::scoring::convert::card_out;
use leadscore_services::routing::{Decision, Target};
use leadscore_store::agents::{AgentInput, Arm, Presence, Skills};

/// Agents one `UpsertAgents` may carry.
const MAX_AGENTS: usize = 10_000;
/// Skills of one kind an agent may list.
const MAX_SKILLS: usize = 64;

pub(crate) fn agents_in(agents: &[pb::Agent]) -> Result<Vec<AgentInput>> {
    batch_len("agents", agents.len(), MAX_AGENTS)?;
    let mut seen = HashSet::new();
    agents
        .iter()
        .enumerate()
        .map(|(i, agent)| {
            let field = |name: &str| format!("agents[{i}].{name}");
            let id = agent_id(&field("id"), &agent.id)?;
            if !seen.insert(id.clone()) {
                return Err(FieldError::new(field("id"), format!("{id:?} appears twice in the batch")));
            }
            if agent.capacity == 0 || agent.capacity > 1000 {
                return Err(FieldError::new(field("capacity"), format!("must be 1-1000, got {}", agent.capacity)));
            }
            let skills = agent.skills.clone().unwrap_or_default();
            let list = |name: &str, values: &[String]| -> Result<Vec<_>> {
                if values.len() > MAX_SKILLS {
                    let rule = format!("at most {MAX_SKILLS} allowed, got {}", values.len());
                    return Err(FieldError::new(field(&format!("skills.{name}")), rule));
                }
                values.iter().enumerate().map(|(j, v)| agent_id(&field(&format!("skills.{name}[{j}]")), v)).collect()
            };
            Ok(AgentInput {
                id,
                name: agent.name.as_str().into(),
                skills: Skills {
                    languages: list("languages", &skills.languages)?,
                    regions: list("regions", &skills.regions)?,
                    products: list("products", &skills.products)?,
                    tier: skills.tier,
                },
                capacity: agent.capacity,
            })
        })
        .collect()
}

pub fn arm_out(arm: Option<Arm>) -> pb::RoutingArm {
    match arm {
        None => pb::RoutingArm::Unspecified,
        Some(Arm::Pairing) => pb::RoutingArm::Pairing,
        Some(Arm::Control) => pb::RoutingArm::Control,
    }
}

pub(crate) fn decision_out(d: Decision) -> pb::RoutingDecision {
    use pb::route_target::Target as Out;
    let target = match d.target {
        Target::Agent(agent) => Out::AgentId(agent.into_string()),
        Target::Queue(queue) => Out::Queue(queue.into_string()),
    };
    let (runner_up_agent_id, runner_up_conversion) =
        d.runner_up.map_or((String::new(), 0.0), |(agent, p)| (agent.into_string(), p));
    pb::RoutingDecision {
        decision_id: d.id,
        lead_id: d.lead_id.into_string(),
        target: Some(pb::RouteTarget { target: Some(target) }),
        priority: d.priority,
        rule: d.rule.into_string(),
        band: band_out(Some(d.band)).into(),
        score: d.score,
        expected_conversion: d.expected_conversion.unwrap_or(0.0),
        runner_up_conversion,
        runner_up_agent_id,
        arm: arm_out(d.arm).into(),
        reasons: d.reasons,
        decided_at: Some(timestamp_from_ms(d.at_ms)),
        queue: d.queue.into_string(),
        card: d.card.map(card_out),
    }
}

/// A `SetAgentState` request's state.
pub(crate) fn presence_in(state: i32) -> Result<Presence> {
    match pb::AgentState::try_from(state) {
        Ok(pb::AgentState::Available) => Ok(Presence::Available),
        Ok(pb::AgentState::Busy) => Ok(Presence::Busy),
        Ok(pb::AgentState::Offline) => Ok(Presence::Offline),
        _ => fail("state", "must be AVAILABLE, BUSY or OFFLINE"),
    }
}
