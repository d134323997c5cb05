//! The dialer across shards. `NextLead` asks every shard for the head of its queue (what the
//! agent would be offered there now, claiming nothing), then claims on the shard with the best
//! head, through its owner, whose log's sequence check keeps the claim exclusive. The head may
//! be gone by then (another agent took it): the claim takes that shard's next best, or, if the
//! shard has nothing left, the next shard's. Outcomes and releases go to the lead's shard,
//! named in the lease id.
//!
//! An agent with a capacity claims at one place, one claim at a time: at the node that owns
//! the shard of its id (its home), where the leases it holds on every shard are counted before
//! each claim. Claims for it through other nodes are forwarded there, so two claims at once
//! through two nodes cannot both pass its capacity.

use std::cmp::Ordering;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt as _;
use futures_util::future::{try_join, try_join_all};
use leadscore_proto::prost_types::Timestamp;
use leadscore_proto::tonic::{self, Request, Response, Status, Streaming};
use leadscore_proto::v1 as pb;

use crate::api::answer;
use pb::cluster_service_client::ClusterServiceClient;
use pb::dialer_service_client::DialerServiceClient;
use pb::dialer_service_server::DialerService;
use pb::next_lead_response::Result as Next;

use super::front::{Front, Part, SHARDS, fan_in, forwarded, list, part_of, read_here, unreachable};
use crate::api::Context;
use crate::api::dialer::convert::{abandonment_out, dry_out, rates_in, with_speed_to_lead};
use crate::api::dialer::session;
use crate::api::fields::{self, timestamp_from_ms};
use crate::api::status::{invalid, status};
use leadscore_cluster::ShardId;
use leadscore_services::dialer::DialError;

/// How many times a claim reads the heads again when other agents took all it saw.
const HEAD_ROUNDS: u32 = 3;
/// Marks a claim forwarded to its agent's home node: it is made there, whoever owns the home
/// shard by then.
const AT_HOME: &str = "leadscore-agent-home";

impl Front {
    fn dialer_client(&self, channel: tonic::transport::Channel) -> DialerServiceClient<tonic::transport::Channel> {
        let max = self.0.max_message_bytes;
        DialerServiceClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    /// The heads of the queues of shards here for `agent`: each a short look under its
    /// queue's lock.
    pub(super) async fn heads_here(
        here: Vec<(ShardId, Context)>,
        campaign: String,
        agent: String,
    ) -> Result<Vec<pb::QueueHead>, Status> {
        read_here(here, "reading queue heads", move |shard, context| {
            let now = context.clock.now_ms();
            let (held, capacity) = context
                .store
                .roster(|roster| {
                    let row = roster.find(&agent)?;
                    Some((roster.held_at(row, now), roster.rows[row].agent.input.capacity))
                })
                .unwrap_or_default();
            let head = match context.dialer.head(&campaign, &agent).map_err(status)? {
                Ok((value, first)) => {
                    pb::QueueHead { shard, score: Some(value), callback: first, ..Default::default() }
                }
                Err(dry) => pb::QueueHead {
                    shard,
                    none_eligible: Some(dry_out(&dry)),
                    next_eligible_at: dry.next_at_ms.map(timestamp_from_ms),
                    ..Default::default()
                },
            };
            Ok(pb::QueueHead { held, capacity, ..head })
        })
        .await
    }

    /// Every shard's head for the agent, here and on the other nodes.
    async fn heads<T>(&self, caller: &Request<T>, campaign: &str, agent: &str) -> Result<Vec<pb::QueueHead>, Status> {
        let (here, there) = self.parts(caller)?;
        let local = Self::heads_here(here, campaign.to_owned(), agent.to_owned());
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let asking = pb::QueueHeadsRequest {
                campaign: campaign.to_owned(),
                agent_id: agent.to_owned(),
                shards: shards.clone(),
            };
            let asking = forwarded(part_of(caller, asking), &shards);
            let mut client = ClusterServiceClient::new(channel);
            async move {
                let answer = client.queue_heads(asking).await.map_err(|e| unreachable(e, &address))?;
                Ok::<_, Status>(answer.into_inner().heads)
            }
        });
        let (local, remote) = try_join(local, try_join_all(remote)).await?;
        Ok(local.into_iter().chain(remote.into_iter().flatten()).collect())
    }

    /// Claims the best lead the agent may call now on any shard: on the shard with the best
    /// head, or, if that one has nothing left by then, the next best; or says why none. When
    /// other agents took every head seen, the heads are read again (a few times): a dry answer
    /// means nothing was eligible, not that this agent was slower.
    async fn claim_best<T>(
        &self,
        caller: &Request<T>,
        asked: &pb::NextLeadRequest,
    ) -> Result<pb::NextLeadResponse, Status> {
        // A part of a claim forwarded to a shard's owner is made as asked.
        let part = caller.metadata().contains_key(SHARDS);
        if part || !self.has_capacity(&asked.agent_id) {
            return self.claim_best_now(caller, asked).await;
        }
        if !caller.metadata().contains_key(AT_HOME) {
            let home = self.shard(&asked.agent_id);
            // With no owner of the home shard reachable now, the claim is made here.
            if let Ok(Part::There { channel, address }) = self.place(home, true) {
                let mut forwarded = part_of(caller, asked.clone());
                forwarded.metadata_mut().insert(AT_HOME, "1".parse().expect("a digit is valid metadata"));
                let answer = self.dialer_client(channel).next_lead(forwarded).await;
                return answer.map(Response::into_inner).map_err(|e| unreachable(e, &address));
            }
        }
        let _turn = self.turn_of(&asked.agent_id).await;
        self.claim_best_now(caller, asked).await
    }

    /// Whether `agent` is registered with a capacity, as any shard here knows it (agents are on
    /// every shard).
    fn has_capacity(&self, agent: &str) -> bool {
        let Some(context) = self.0.engines.any() else { return false };
        let capacity =
            context.store.roster(|roster| roster.find(agent).map(|row| roster.rows[row].agent.input.capacity));
        capacity.is_some_and(|capacity| capacity > 0)
    }

    /// Waits for `agent`'s turn to claim here: its claims go one at a time.
    async fn turn_of(&self, agent: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = {
            let mut claiming = self.0.claiming.lock().unwrap_or_else(|e| e.into_inner());
            match claiming.get(agent).and_then(std::sync::Weak::upgrade) {
                Some(turn) => turn,
                None => {
                    // Agents no longer claiming are forgotten as the map grows.
                    if claiming.len() >= 64 && claiming.len().is_power_of_two() {
                        claiming.retain(|_, turn| turn.strong_count() > 0);
                    }
                    let turn = Arc::new(tokio::sync::Mutex::new(()));
                    claiming.insert(agent.to_owned(), Arc::downgrade(&turn));
                    turn
                }
            }
        };
        turn.lock_owned().await
    }

    /// `claim_best` once it is this node's to make.
    async fn claim_best_now<T>(
        &self,
        caller: &Request<T>,
        asked: &pb::NextLeadRequest,
    ) -> Result<pb::NextLeadResponse, Status> {
        let mut rounds = 0;
        loop {
            let mut heads = self.heads(caller, &asked.campaign, &asked.agent_id).await?;
            // A registered agent's capacity counts its leases on every shard.
            let (held, capacity) = (heads.iter().map(|h| h.held).sum::<u32>(), heads.iter().map(|h| h.capacity).max());
            if let Some(capacity) = capacity.filter(|&capacity| capacity > 0 && held >= capacity) {
                let agent = &asked.agent_id;
                return Err(status(DialError::AgentUnavailable(format!(
                    "agent {agent:?} holds {held} leases over every shard, its capacity {capacity}; \
                     report or release one first"
                ))));
            }
            heads.sort_by(best_first);
            let (mut dry, mut raced) = (Dry::default(), false);
            for head in heads {
                if head.score.is_none() {
                    dry.add(head.none_eligible.as_ref(), head.next_eligible_at.as_ref());
                    continue;
                }
                let claiming = part_of(caller, asked.clone());
                let answer =
                    one_shard!(self, claiming, head.shard, DialerService, dialer_client, next_lead)?.into_inner();
                match answer.result {
                    Some(Next::Claim(_)) => return Ok(answer),
                    Some(Next::NoneEligible(counts)) => {
                        raced = true;
                        dry.add(Some(&counts), answer.next_eligible_at.as_ref());
                    }
                    None => {
                        return Err(Status::internal(format!("shard {} answered NextLead with nothing", head.shard)));
                    }
                }
            }
            rounds += 1;
            if !raced || rounds == HEAD_ROUNDS {
                return Ok(pb::NextLeadResponse {
                    result: Some(Next::NoneEligible(dry.counts)),
                    next_eligible_at: dry.next_at,
                });
            }
        }
    }

    /// The revocations of `agent`'s leases on every shard, here and through their owners;
    /// the stream fails as soon as any shard moves.
    async fn revocations<T>(&self, caller: &Request<T>, agent: &str) -> Result<session::Revocations, Status> {
        let (here, there) = self.spread(0..self.0.shards, true)?;
        let mut parts = self.revocations_here(here, agent)?;
        for (address, (channel, shards)) in there {
            let asking = pb::RevocationsRequest { agent_id: agent.to_owned(), shards: shards.clone() };
            let asking = forwarded(part_of(caller, asking), &shards);
            let revoked =
                ClusterServiceClient::new(channel).revocations(asking).await.map_err(|e| unreachable(e, &address))?;
            let revoked = revoked.into_inner().map(move |r| r.map_err(|e| unreachable(e, &address)));
            parts.push((format!("shards {}", list(&shards)), Box::pin(revoked)));
        }
        Ok(Box::pin(fan_in(parts)))
    }
}

/// Callbacks first, then the best score; shards in order among equals.
fn best_first(a: &pb::QueueHead, b: &pb::QueueHead) -> Ordering {
    b.callback
        .cmp(&a.callback)
        .then(b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal))
        .then(a.shard.cmp(&b.shard))
}

/// Why no shard had a lead: every shard's reasons added up, and the soonest next chance.
#[derive(Default)]
struct Dry {
    counts: pb::IneligibleCounts,
    next_at: Option<Timestamp>,
}

impl Dry {
    fn add(&mut self, counts: Option<&pb::IneligibleCounts>, next_at: Option<&Timestamp>) {
        if let Some(c) = counts {
            let sum = &mut self.counts;
            sum.outside_calling_window += c.outside_calling_window;
            sum.recycling += c.recycling;
            sum.max_attempts += c.max_attempts;
            sum.do_not_call += c.do_not_call;
            sum.missing_consent += c.missing_consent;
            sum.leased += c.leased;
            sum.filtered_out += c.filtered_out;
            sum.holiday += c.holiday;
            sum.not_routable_to_agent += c.not_routable_to_agent;
            sum.finished += c.finished;
            sum.held_for_better_hour += c.held_for_better_hour;
            sum.no_phone += c.no_phone;
        }
        self.next_at = earliest(self.next_at, next_at.copied());
    }
}

#[tonic::async_trait]
impl DialerService for Front {
    type DialerSessionStream = session::SessionStream;

    async fn next_lead(&self, request: Request<pb::NextLeadRequest>) -> Result<Response<pb::NextLeadResponse>, Status> {
        fields::agent_id("agent_id", &request.get_ref().agent_id)?;
        self.claim_best(&request, request.get_ref()).await.map(Response::new)
    }

    async fn report_outcome(
        &self,
        request: Request<pb::ReportOutcomeRequest>,
    ) -> Result<Response<pb::ReportOutcomeResponse>, Status> {
        let outcome = request.get_ref().outcome.clone().unwrap_or_default();
        let lead = leased_lead("outcome.lease_id", &outcome.lease_id)?;
        let shard = self.shard(&lead);
        match self.part(shard, &request)? {
            // A number put on the do-not-call list goes on every other shard's first: once the
            // outcome is acknowledged, no shard offers a lead with that number.
            Part::Here(context) => {
                if outcome.result == pb::CallResult::DoNotCall as i32 {
                    let phone = context.store.read_lead(&lead, |l| l.profile().map(|p| p.phone.to_string()));
                    if let Some(phone) = phone.flatten().filter(|p| !p.is_empty()) {
                        self.mark_elsewhere(&request, shard, vec![phone], Vec::new()).await?;
                    }
                }
                <Context as DialerService>::report_outcome(&context, request).await
            }
            Part::There { channel, address } => self
                .dialer_client(channel)
                .report_outcome(forwarded(request, &[shard]))
                .await
                .map_err(|e| unreachable(e, &address)),
        }
    }

    async fn release_lead(
        &self,
        request: Request<pb::ReleaseLeadRequest>,
    ) -> Result<Response<pb::ReleaseLeadResponse>, Status> {
        let lead = leased_lead("lease_id", &request.get_ref().lease_id.clone())?;
        one_lead!(self, request, &lead, DialerService, dialer_client, release_lead)
    }

    /// A hopper over every shard: each claim is the best across them (as `NextLead`), and the
    /// revocations of the agent's leases come from every shard's owner.
    async fn dialer_session(
        &self,
        request: Request<Streaming<pb::DialerRequest>>,
    ) -> Result<Response<Self::DialerSessionStream>, Status> {
        let caller = Arc::new(part_of(&request, ()));
        let mut inbound = request.into_inner();
        let hello = session::hello(&mut inbound).await?;
        // Checked here when this node serves a shard; otherwise by the first claim's shard.
        if let Some(context) = self.0.engines.any() {
            context.scoring.pipeline().campaign_or_error("hello.campaign", &hello.campaign).map_err(status)?;
        }
        let revocations = self.revocations(&caller, &hello.agent_id).await?;
        let floor = Shards { front: self.clone(), caller };
        let (campaign, closing) = (hello.campaign.clone(), self.0.engines.closing());
        Ok(Response::new(session::start(floor, hello, campaign, self.0.session, inbound, revocations, closing)))
    }

    /// Every shard's board added up: queues, reasons, zones and minutes summed, each agent's
    /// leases and calls summed over the shards of its leads.
    async fn wallboard(
        &self,
        request: Request<pb::WallboardRequest>,
    ) -> Result<Response<pb::WallboardResponse>, Status> {
        let mut boards =
            every_shard!(self, request, request.get_ref().clone(), DialerService, dialer_client, wallboard);
        let first = boards.next().ok_or_else(|| Status::internal("a wallboard of no shard"))?;
        Ok(answer(with_speed_to_lead(boards.fold(first, add_board))))
    }

    async fn contact_rates(
        &self,
        request: Request<pb::ContactRatesRequest>,
    ) -> Result<Response<pb::ContactRatesResponse>, Status> {
        let parts: Vec<_> =
            every_shard!(self, request, request.get_ref().clone(), DialerService, dialer_client, contact_rates)
                .collect();
        Ok(answer(rates_in(&parts).ok_or_else(|| Status::internal("contact rates of no shard"))?))
    }
}

/// Two parts of the floor's board as one.
fn add_board(mut total: pb::WallboardResponse, part: pb::WallboardResponse) -> pb::WallboardResponse {
    total.queued += part.queued;
    total.callable += part.callable;
    total.to_no_agent += part.to_no_agent;
    total.callbacks_due += part.callbacks_due;
    total.oldest_callback_due = earliest(total.oldest_callback_due, part.oldest_callback_due);
    for queue in part.routing_queues {
        match total.routing_queues.iter_mut().find(|q| q.queue == queue.queue) {
            Some(known) => {
                known.waiting += queue.waiting;
                known.oldest_since = earliest(known.oldest_since.take(), queue.oldest_since);
            }
            None => total.routing_queues.push(queue),
        }
    }
    total.routing_queues.sort_by(|a, b| a.queue.cmp(&b.queue));
    let mut ineligible = Dry::default();
    ineligible.add(total.ineligible.as_ref(), None);
    ineligible.add(part.ineligible.as_ref(), None);
    total.ineligible = Some(ineligible.counts);
    for zone in part.zones {
        match total.zones.iter_mut().find(|z| (&z.time_zone, &z.region) == (&zone.time_zone, &zone.region)) {
            Some(known) => {
                known.callable += zone.callable;
                known.to_no_agent += zone.to_no_agent;
            }
            None => total.zones.push(zone),
        }
    }
    total.zones.sort_by(|a, b| (&a.time_zone, &a.region).cmp(&(&b.time_zone, &b.region)));
    // Every shard counts minutes of the wall clock: each of the part's adds to the same minute
    // of the total (a part read just after a minute turned has one the total has not).
    let start = |m: &pb::MinuteCounts| m.start.as_ref().map_or(0, |at| at.seconds);
    let first = total.minutes.first().map_or(0, start);
    for minute in part.minutes {
        let Some(sum) = usize::try_from((start(&minute) - first) / 60).ok().and_then(|i| total.minutes.get_mut(i))
        else {
            continue;
        };
        sum.claims += minute.claims;
        if sum.outcomes.len() < minute.outcomes.len() {
            sum.outcomes.resize(minute.outcomes.len(), 0);
        }
        for (s, n) in sum.outcomes.iter_mut().zip(minute.outcomes) {
            *s += n;
        }
        add_revocations(sum.revoked.get_or_insert_default(), minute.revoked.unwrap_or_default());
        sum.first_call_seconds.extend(minute.first_call_seconds);
        sum.talk_ms += minute.talk_ms;
        sum.talked += minute.talked;
    }
    for agent in part.agents {
        match total.agents.iter_mut().find(|a| a.agent_id == agent.agent_id) {
            Some(known) => {
                known.leases += agent.leases;
                known.decided += agent.decided;
                known.converted += agent.converted;
            }
            None => total.agents.push(agent),
        }
    }
    total.agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    let (sum, more) = (total.abandonment.unwrap_or_default(), part.abandonment.unwrap_or_default());
    total.abandonment = Some(abandonment_out((sum.answered + more.answered, sum.abandoned + more.abandoned)));
    total
}

/// The earlier of two instants, either of which may be unknown.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if (a.seconds, a.nanos) <= (b.seconds, b.nanos) { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Two counts of revoked leases as one.
pub(super) fn add_revocations(sum: &mut pb::RevocationCounts, more: pb::RevocationCounts) {
    sum.do_not_call += more.do_not_call;
    sum.consent_withdrawn += more.consent_withdrawn;
    sum.objected += more.objected;
    sum.erased += more.erased;
    sum.window_closed += more.window_closed;
}

/// The lead a lease id names (`<sequence>-<lead id>`), which says the shard.
fn leased_lead(field: &str, lease_id: &str) -> Result<String, Status> {
    match lease_id.split_once('-') {
        Some((sequence, lead)) if sequence.parse::<u64>().is_ok() && !lead.is_empty() => Ok(lead.to_owned()),
        _ => Err(invalid(field, &format!("not a lease id: {lease_id:?}"), "INVALID_FIELD")),
    }
}

/// A hopper session's floor on a cluster node: every shard, here and through their owners,
/// with the caller's credentials.
#[derive(Clone)]
struct Shards {
    front: Front,
    caller: Arc<Request<()>>,
}

impl Shards {
    fn request<U>(&self, message: U) -> Request<U> {
        part_of(&self.caller, message)
    }
}

impl session::Floor for Shards {
    async fn claim(&self, campaign: &str, agent: &str, max: usize, brief: bool) -> Result<session::Claims, Status> {
        let asked = pb::NextLeadRequest { campaign: campaign.to_owned(), agent_id: agent.to_owned() };
        let mut claims = Vec::new();
        while claims.len() < max {
            let answer = match self.front.claim_best(&self.caller, &asked).await {
                Ok(answer) => answer,
                // The leads claimed so far are the session's whatever stops the next (its agent
                // at capacity, a shard moving): dropped, they would stay leased to nobody.
                Err(_) if !claims.is_empty() => break,
                Err(status) => return Err(status),
            };
            match answer.result {
                Some(Next::Claim(claim)) => claims.push(if brief { briefly(claim) } else { claim }),
                Some(Next::NoneEligible(counts)) => {
                    let next_at_ms = answer.next_eligible_at.as_ref().map(fields::timestamp_to_ms);
                    return Ok(session::Claims { claims, dry: Some(session::Starved { counts, next_at_ms }) });
                }
                None => return Err(Status::internal("NextLead answered with nothing")),
            }
        }
        Ok(session::Claims { claims, dry: None })
    }

    async fn report(&self, outcome: pb::Outcome) -> Result<pb::ReportOutcomeResponse, Status> {
        let request = self.request(pb::ReportOutcomeRequest { outcome: Some(outcome) });
        self.front.report_outcome(request).await.map(Response::into_inner)
    }

    async fn release(&self, lease_id: String) -> Result<(), Status> {
        self.front.release_lead(self.request(pb::ReleaseLeadRequest { lease_id })).await.map(drop)
    }

    /// No shard tells another node when a lead becomes callable: the session polls.
    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }

    /// Counted by the shard's own engine when the lease expires.
    fn window_closed(&self, _campaign: &str) {}

    fn now_ms(&self) -> i64 {
        self.front.0.clock.now_ms()
    }
}

/// A claim as a brief session sends it: what dialling needs, as on one engine.
fn briefly(claim: pb::Claim) -> pb::Claim {
    let lead = claim.lead.map(|lead| pb::Lead {
        id: lead.id,
        phone: lead.phone,
        time_zone: lead.time_zone,
        ..Default::default()
    });
    let score = claim.score.map(|score| pb::LeadScore {
        lead_id: score.lead_id,
        campaign: score.campaign,
        score: score.score,
        band: score.band,
        ..Default::default()
    });
    pb::Claim { lead, score, ..claim }
}
