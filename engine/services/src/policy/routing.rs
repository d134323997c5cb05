//! The routing section of a configuration, compiled: rules (first that holds wins, with
//! escalation after a timeout) naming a queue and the skills of the agents who serve it, and
//! the lead and agent as routing expressions read them. Data only; the router decides with it.

use std::time::Duration;

use compact_str::CompactString;

use super::expr::{Env, Expr, Scope};
use crate::scoring::pipeline::Band;
use leadscore_config::{MAX_ROUTING_RULES, RoutingConfig};
use leadscore_store::Store;
use leadscore_store::agents::Skills;
use leadscore_store::lead::{Lead, Value};

/// One routing rule, compiled.
#[derive(Debug)]
pub struct Rule {
    /// Its place in the policy.
    pub(crate) index: usize,
    pub name: CompactString,
    pub(crate) when: Expr,
    pub queue: CompactString,
    /// `None`: no agent takes these leads (a nurture queue).
    pub(crate) agents: Option<Expr>,
    pub(crate) agents_text: String,
    pub priority: i32,
    pub(crate) timeout_ms: Option<i64>,
}

/// The routing section of a configuration, compiled.
#[derive(Debug)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub(crate) min_agents_for_pairing: usize,
    pub(crate) prior_calls: f64,
    pub(crate) control_share: f64,
}

/// The rule in force for a lead, and whether it got there by escalation.
pub(crate) struct Step<'p> {
    pub(crate) rule: &'p Rule,
    /// The rules whose timeout passed, in order.
    pub(crate) escalated_from: Vec<&'p Rule>,
    /// When this rule's own timeout ends, if it has one.
    pub(crate) escalates_at_ms: Option<i64>,
}

impl Policy {
    /// Every problem with the rules, each naming its key.
    pub fn compile(config: &RoutingConfig) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        for (i, rule) in config.rules.iter().enumerate() {
            let path = format!("routing.rules[{i}]");
            if rule.name.is_empty() || config.rules[..i].iter().any(|r| r.name == rule.name) {
                problems.push(format!("{path}.name: must be set and unique, got {:?}", rule.name));
            }
            if rule.queue.is_empty() {
                problems.push(format!("{path}.queue: must name the queue the rule routes to"));
            }
            let when = Expr::parse(&rule.when, Scope::Lead).map_err(|e| format!("{path}.when: {e}"));
            let agents = match rule.agents.trim() {
                "" => Ok(None),
                text => Expr::parse(text, Scope::Agent).map(Some).map_err(|e| format!("{path}.agents: {e}")),
            };
            let timeout_ms = match rule.timeout.as_str() {
                "" => Ok(None),
                text => match humantime::parse_duration(text) {
                    Ok(d) if d > Duration::ZERO && d <= Duration::from_secs(30 * 86_400) => {
                        Ok(Some(d.as_millis() as i64))
                    }
                    _ => Err(format!(
                        "{path}.timeout: must be a duration such as 30s, 10m or 1h, at most 30 days, got {text:?}"
                    )),
                },
            };
            match (when, agents, timeout_ms) {
                (Ok(when), Ok(agents), Ok(timeout_ms)) => rules.push(Rule {
                    index: rules.len(),
                    name: rule.name.as_str().into(),
                    when,
                    queue: rule.queue.as_str().into(),
                    agents,
                    agents_text: rule.agents.trim().to_owned(),
                    priority: rule.priority,
                    timeout_ms,
                }),
                (when, agents, timeout_ms) => {
                    problems.extend([when.err(), agents.err(), timeout_ms.err()].into_iter().flatten());
                }
            }
        }
        if config.rules.len() > MAX_ROUTING_RULES {
            problems
                .push(format!("routing.rules: at most {MAX_ROUTING_RULES} are allowed, got {}", config.rules.len()));
        }
        if !(1..=1000).contains(&config.min_agents_for_pairing) {
            problems
                .push(format!("routing.min_agents_for_pairing: must be 1-1000, got {}", config.min_agents_for_pairing));
        }
        if !(config.prior_calls.is_finite() && config.prior_calls > 0.0) {
            problems.push(format!("routing.prior_calls: must be a number above 0, got {}", config.prior_calls));
        }
        if !(0.0..=1.0).contains(&config.control_share) {
            problems.push(format!("routing.control_share: must be 0-1, got {}", config.control_share));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            rules,
            min_agents_for_pairing: config.min_agents_for_pairing as usize,
            prior_calls: config.prior_calls,
            control_share: config.control_share,
        })
    }

    /// The rule in force for a lead waiting since `since_ms`: the first that holds, or, once
    /// its timeout has passed, the next that holds, and so on. `None` if no rule holds.
    pub(crate) fn step(&self, lead: &dyn Env, since_ms: i64, now_ms: i64) -> Option<Step<'_>> {
        let mut escalated_from = Vec::new();
        let mut deadline = since_ms;
        for rule in self.rules.iter().filter(|r| r.when.holds(lead)) {
            match rule.timeout_ms {
                Some(timeout) if now_ms >= deadline + timeout => {
                    deadline += timeout;
                    escalated_from.push(rule);
                }
                timeout => return Some(Step { rule, escalated_from, escalates_at_ms: timeout.map(|t| deadline + t) }),
            }
        }
        // Every rule that holds has timed out: the last of them keeps the lead.
        let rule = escalated_from.pop()?;
        Some(Step { rule, escalated_from, escalates_at_ms: None })
    }

    /// The rules whose condition holds for a lead, one bit each in rule order.
    pub fn chain(&self, lead: &dyn Env) -> u64 {
        self.rules.iter().filter(|r| r.when.holds(lead)).fold(0, |chain, r| chain | 1 << r.index)
    }

    /// Whether an agent may take the leads of a chain, as far as its skills alone tell: every
    /// rule of the chain a lead can reach lets it (`Access::All`), none does, or it depends on
    /// the lead (how long it has waited, or a skill expression that reads it).
    pub fn access(&self, chain: u64, agent: (&str, &Skills)) -> Access {
        let (mut some, mut all) = (false, chain != 0);
        for rule in self.reachable(chain) {
            let allows = match &rule.agents {
                None => Some(false),
                Some(skills) if skills.reads_lead() => None,
                Some(skills) => Some(skills.holds(&AgentEnv(agent))),
            };
            some |= allows != Some(false);
            all &= allows == Some(true);
        }
        match (all, some) {
            (true, _) => Access::All,
            // No rule holds, or none that does lets this agent in.
            (false, false) => Access::None,
            (false, true) => Access::Some,
        }
    }

    /// Whether some agent could take the leads of a chain: a rule of it that a lead can reach
    /// routes to agents. False for leads routing sends only to a queue nobody calls (nurture).
    pub fn staffed(&self, chain: u64) -> bool {
        self.reachable(chain).any(|rule| rule.agents.is_some())
    }

    /// The rules of a chain a lead can reach, in order: those after one that keeps its leads
    /// for ever (no timeout) are never reached.
    fn reachable(&self, chain: u64) -> impl Iterator<Item = &Rule> {
        let mut kept = false;
        self.rules.iter().filter(move |r| chain & 1 << r.index != 0).take_while(move |rule| {
            let reached = !kept;
            kept |= rule.timeout_ms.is_none();
            reached
        })
    }

    /// Whether `agent` may take the lead now: the rule in force routes to agents, and its
    /// skill expression holds for this one.
    pub fn allows(&self, lead: &LeadEnv, agent: (&str, &Skills), now_ms: i64) -> bool {
        let Some(step) = self.step(lead, lead.waiting_since_ms(), now_ms) else { return false };
        step.rule.agents.as_ref().is_some_and(|skills| skills.holds(&lead.with_agent(agent)))
    }
}

/// What an agent's skills say of a group of leads sharing a chain of rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    All,
    None,
    /// Each lead must be asked.
    Some,
}

/// An agent alone, for skill expressions that do not read the lead.
struct AgentEnv<'a>((&'a str, &'a Skills));

impl Env for AgentEnv<'_> {
    fn band(&self) -> Band {
        unreachable!("only expressions that do not read the lead are evaluated for an agent alone")
    }
    fn score(&self) -> f64 {
        unreachable!("only expressions that do not read the lead are evaluated for an agent alone")
    }
    fn account_score(&self) -> Option<f64> {
        unreachable!("only expressions that do not read the lead are evaluated for an agent alone")
    }
    fn attribute(&self, _: &str) -> Option<Value> {
        unreachable!("only expressions that do not read the lead are evaluated for an agent alone")
    }
    fn agent(&self) -> (&str, &Skills) {
        self.0
    }
}

/// A lead as routing reads it.
pub struct LeadEnv<'a> {
    store: &'a Store,
    lead: &'a Lead,
    pub(crate) band: Band,
    score: f64,
    account_score: Option<f64>,
    agent: Option<(&'a str, &'a Skills)>,
}

impl<'a> LeadEnv<'a> {
    pub fn new(store: &'a Store, lead: &'a Lead, band: Band, score: f64, account_score: Option<f64>) -> Self {
        Self { store, lead, band, score, account_score, agent: None }
    }

    pub(crate) fn with_agent<'b>(&'b self, agent: (&'b str, &'b Skills)) -> LeadEnv<'b> {
        LeadEnv { agent: Some(agent), ..*self }
    }

    /// Escalation counts from the lead's latest sign of life: its creation, or its newest
    /// event (a call's outcome is one), so a lead that acts again starts at the first rule.
    pub(crate) fn waiting_since_ms(&self) -> i64 {
        self.lead.events.last().map_or(self.lead.created_at_ms, |e| e.at_ms().max(self.lead.created_at_ms))
    }
}

impl Env for LeadEnv<'_> {
    fn band(&self) -> Band {
        self.band
    }
    fn score(&self) -> f64 {
        self.score
    }
    fn account_score(&self) -> Option<f64> {
        self.account_score
    }
    fn attribute(&self, name: &str) -> Option<Value> {
        self.store.attribute(self.lead, name)
    }
    fn agent(&self) -> (&str, &Skills) {
        self.agent.expect("skill expressions are evaluated with an agent")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_config::RoutingRuleConfig;

    struct Lead(Band);

    impl Env for Lead {
        fn band(&self) -> Band {
            self.0
        }
        fn score(&self) -> f64 {
            50.0
        }
        fn account_score(&self) -> Option<f64> {
            None
        }
        fn attribute(&self, _: &str) -> Option<Value> {
            None
        }
        fn agent(&self) -> (&str, &Skills) {
            unreachable!("conditions read the lead only")
        }
    }

    fn rule(name: &str, when: &str, timeout: &str) -> RoutingRuleConfig {
        RoutingRuleConfig {
            name: name.into(),
            when: when.into(),
            queue: name.into(),
            agents: "tier >= 1".into(),
            priority: 0,
            timeout: timeout.into(),
        }
    }

    #[test]
    fn escalation_walks_the_rules_that_hold_and_the_last_keeps_the_lead() {
        let config = RoutingConfig {
            rules: vec![
                rule("seniors", "band == 'hot'", "10m"),
                rule("warm", "band == 'warm'", ""),
                rule("anyone-hot", "band == 'hot'", "5m"),
            ],
            ..RoutingConfig::default()
        };
        let policy = Policy::compile(&config).unwrap();
        let minute = 60_000;
        let at = |band, waited: i64| {
            let step = policy.step(&Lead(band), 0, waited * minute).map(|s| (s.rule.name.clone(), s.escalates_at_ms));
            step.map(|(name, at)| (name.to_string(), at.map(|ms| ms / minute)))
        };
        assert_eq!(at(Band::Hot, 0), Some(("seniors".into(), Some(10))));
        assert_eq!(at(Band::Hot, 10), Some(("anyone-hot".into(), Some(15))), "the warm rule does not hold");
        assert_eq!(at(Band::Hot, 15), Some(("anyone-hot".into(), None)), "the last rule that holds keeps it");
        assert_eq!(at(Band::Warm, 500), Some(("warm".into(), None)));
        assert_eq!(at(Band::Unqualified, 0), None);
    }

    #[test]
    fn access_tells_which_chains_an_agent_may_take_from_its_skills_alone() {
        let with = |agents: &str, r: RoutingRuleConfig| RoutingRuleConfig { agents: agents.into(), ..r };
        let config = RoutingConfig {
            rules: vec![
                with("tier >= 2", rule("seniors", "band == 'hot'", "10m")),
                with("tier >= 1", rule("anyone-hot", "band == 'hot'", "")),
                with("tier == 1", rule("sdr", "band == 'warm'", "")),
                with("", rule("nurture", "true", "")),
            ],
            ..RoutingConfig::default()
        };
        let policy = Policy::compile(&config).unwrap();
        let (hot, warm, cold) =
            (policy.chain(&Lead(Band::Hot)), policy.chain(&Lead(Band::Warm)), policy.chain(&Lead(Band::Unqualified)));
        assert_eq!((hot, warm, cold), (0b1011, 0b1100, 0b1000));
        let junior = Skills { tier: 1, ..Skills::default() };
        let senior = Skills { tier: 2, ..Skills::default() };
        // A junior takes hot leads only once they waited past the seniors' rule.
        assert_eq!(policy.access(hot, ("j", &junior)), Access::Some);
        assert_eq!(policy.access(hot, ("s", &senior)), Access::All);
        assert_eq!(policy.access(warm, ("j", &junior)), Access::All);
        assert_eq!(policy.access(warm, ("s", &senior)), Access::None);
        assert_eq!(policy.access(cold, ("s", &senior)), Access::None);
        assert_eq!(policy.access(0, ("s", &senior)), Access::None, "no rule holds");
    }
}
