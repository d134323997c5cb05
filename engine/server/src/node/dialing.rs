//! The dialer across shards. `NextLead` asks every shard for the head of its queue (what the
//! agent would be offered there now, claiming nothing), then claims on the shard with the best
//! head, through its owner, whose log's sequence check keeps the claim exclusive. The head may
//! be gone by then (another agent took it): the claim takes that shard's next best, or, if the
//! shard has nothing left, the next shard's. Outcomes and releases go to the lead's shard,
//! named in the lease id.

use std::cmp::Ordering;

use futures_util::future::{try_join, try_join_all};
use leadscore_proto::tonic::{self, Request, Response, Status, Streaming};
use leadscore_proto::v1 as pb;
use pb::cluster_service_client::ClusterServiceClient;
use pb::dialer_service_client::DialerServiceClient;
use pb::dialer_service_server::DialerService;
use pb::next_lead_response::Result as Next;
use tokio_stream::wrappers::ReceiverStream;

use super::front::{Front, Part, forwarded, not_yet, part_of, unreachable};
use crate::api::Context;
use crate::api::dialer::convert::dry_out;
use crate::api::fields::{self, timestamp_from_ms};
use crate::api::status::status;
use leadscore_cluster::ShardId;
use leadscore_services::dialer::Pick;

impl Front {
    fn dialer_client(&self, channel: tonic::transport::Channel) -> DialerServiceClient<tonic::transport::Channel> {
        let max = self.0.max_message_bytes;
        DialerServiceClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    /// The heads of the queues of shards here for `agent`, read in one blocking task: each
    /// is a short look under its queue's lock.
    pub(super) async fn heads_here(
        here: Vec<(ShardId, Context)>,
        campaign: String,
        agent: String,
    ) -> Result<Vec<pb::QueueHead>, Status> {
        let read = move || {
            let head = |(shard, context): (ShardId, Context)| {
                Ok(match context.dialer.head(&campaign, &agent).map_err(status)? {
                    Ok((score, pick)) => pb::QueueHead {
                        shard,
                        score: Some(score),
                        callback: pick != Pick::BestScore,
                        ..Default::default()
                    },
                    Err(dry) => pb::QueueHead {
                        shard,
                        none_eligible: Some(dry_out(&dry)),
                        next_eligible_at: dry.next_at_ms.map(timestamp_from_ms),
                        ..Default::default()
                    },
                })
            };
            here.into_iter().map(head).collect::<Result<Vec<_>, Status>>()
        };
        tokio::task::spawn_blocking(read).await.map_err(|e| Status::internal(format!("reading queue heads: {e}")))?
    }

    /// Every shard's head for the agent, here and on the other nodes.
    async fn heads(&self, request: &Request<pb::NextLeadRequest>) -> Result<Vec<pb::QueueHead>, Status> {
        let (campaign, agent) = (&request.get_ref().campaign, &request.get_ref().agent_id);
        let (here, there) = self.parts(request)?;
        let local = Self::heads_here(here, campaign.clone(), agent.clone());
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let asking =
                pb::QueueHeadsRequest { campaign: campaign.clone(), agent_id: agent.clone(), shards: shards.clone() };
            let asking = forwarded(part_of(request, asking), &shards);
            let mut client = ClusterServiceClient::new(channel);
            async move {
                let answer = client.queue_heads(asking).await.map_err(|e| unreachable(e, &address))?;
                Ok::<_, Status>(answer.into_inner().heads)
            }
        });
        let (local, remote) = try_join(local, try_join_all(remote)).await?;
        Ok(local.into_iter().chain(remote.into_iter().flatten()).collect())
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
    next_at: Option<leadscore_proto::prost_types::Timestamp>,
}

impl Dry {
    fn add(
        &mut self,
        counts: Option<&pb::IneligibleCounts>,
        next_at: Option<&leadscore_proto::prost_types::Timestamp>,
    ) {
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
        }
        if let Some(at) = next_at
            && self.next_at.as_ref().is_none_or(|soonest| (at.seconds, at.nanos) < (soonest.seconds, soonest.nanos))
        {
            self.next_at = Some(*at);
        }
    }
}

#[tonic::async_trait]
impl DialerService for Front {
    type DialerSessionStream = ReceiverStream<Result<pb::DialerResponse, Status>>;

    async fn next_lead(&self, request: Request<pb::NextLeadRequest>) -> Result<Response<pb::NextLeadResponse>, Status> {
        fields::agent_id("agent_id", &request.get_ref().agent_id)?;
        let mut heads = self.heads(&request).await?;
        heads.sort_by(best_first);
        let mut dry = Dry::default();
        for head in heads {
            if head.score.is_none() {
                dry.add(head.none_eligible.as_ref(), head.next_eligible_at.as_ref());
                continue;
            }
            let claiming = part_of(&request, request.get_ref().clone());
            let answer = one_shard!(self, claiming, head.shard, DialerService, dialer_client, next_lead)?.into_inner();
            match answer.result {
                Some(Next::Claim(_)) => return Ok(Response::new(answer)),
                Some(Next::NoneEligible(counts)) => dry.add(Some(&counts), answer.next_eligible_at.as_ref()),
                None => return Err(Status::internal(format!("shard {} answered NextLead with nothing", head.shard))),
            }
        }
        Ok(Response::new(pb::NextLeadResponse {
            result: Some(Next::NoneEligible(dry.counts)),
            next_eligible_at: dry.next_at,
        }))
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

    async fn dialer_session(
        &self,
        _request: Request<Streaming<pb::DialerRequest>>,
    ) -> Result<Response<Self::DialerSessionStream>, Status> {
        Err(not_yet("DialerSession"))
    }

    async fn wallboard(
        &self,
        _request: Request<pb::WallboardRequest>,
    ) -> Result<Response<pb::WallboardResponse>, Status> {
        Err(not_yet("Wallboard"))
    }
}

/// The lead a lease id names (`<sequence>-<lead id>`), which says the shard.
fn leased_lead(field: &str, lease_id: &str) -> Result<String, Status> {
    match lease_id.split_once('-') {
        Some((sequence, lead)) if sequence.parse::<u64>().is_ok() && !lead.is_empty() => Ok(lead.to_owned()),
        _ => Err(Status::invalid_argument(format!("{field}: not a lease id: {lease_id:?}"))),
    }
}
