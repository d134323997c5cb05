//! `ClusterService`: what nodes ask each other (see cluster.proto), and the marks every shard
//! keeps whichever shard made them: numbers put on the do-not-call list and the keys of erased
//! people go to every other shard before the call that made them is done, so that once it is
//! acknowledged no shard offers that number or takes that person back.

use futures_util::future::{try_join, try_join_all};
use leadscore_proto::tonic::{self, Request, Response, Status};
use leadscore_proto::v1 as pb;

use crate::api::answer;
use pb::cluster_service_client::ClusterServiceClient;
use pb::cluster_service_server::ClusterService;

use futures_util::StreamExt as _;

use super::front::{Front, Streamed, fan_in, forwarded, part_of, unreachable};
use crate::api::Context;
use crate::api::fields;
use crate::api::status::status;
use leadscore_cluster::ShardId;

#[tonic::async_trait]
impl ClusterService for Front {
    async fn queue_heads(
        &self,
        request: Request<pb::QueueHeadsRequest>,
    ) -> Result<Response<pb::QueueHeadsResponse>, Status> {
        let asked = request.get_ref();
        fields::agent_id("agent_id", &asked.agent_id)?;
        let here = self.all_here(&asked.shards)?;
        let heads = Self::heads_here(here, asked.campaign.clone(), asked.agent_id.clone()).await?;
        Ok(answer(pb::QueueHeadsResponse { heads }))
    }

    async fn mark(&self, request: Request<pb::MarkRequest>) -> Result<Response<pb::MarkResponse>, Status> {
        let asked = request.into_inner();
        let keys = asked
            .suppression_keys
            .iter()
            .map(|key| <[u8; 32]>::try_from(key.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Status::invalid_argument("suppression_keys: each must be 32 bytes"))?;
        let here = self.all_here(&asked.shards)?;
        let marking = here.into_iter().map(|(_, context)| mark_here(context, asked.do_not_call.clone(), keys.clone()));
        try_join_all(marking).await?;
        Ok(answer(pb::MarkResponse {}))
    }

    async fn distributions(
        &self,
        request: Request<pb::DistributionsRequest>,
    ) -> Result<Response<pb::DistributionsResponse>, Status> {
        let asked = request.into_inner();
        let (campaign, bins) = crate::api::scoring::convert::distribution(&pb::ScoreDistributionRequest {
            campaign: asked.campaign,
            bins: asked.bins,
        })?;
        if let Some(top) = asked.top.filter(|top| !(top.is_finite() && *top > 0.0)) {
            return Err(Status::invalid_argument(format!("top: must be a positive number, got {top}")));
        }
        let here = self.all_here(&asked.shards)?;
        let shards = Self::distributions_here(here, campaign, bins, asked.top).await?;
        Ok(answer(pb::DistributionsResponse { shards }))
    }

    async fn config_applied(
        &self,
        request: Request<pb::ConfigAppliedRequest>,
    ) -> Result<Response<pb::ConfigAppliedResponse>, Status> {
        let applied = self.0.engines.applied(request.get_ref().version).await?;
        Ok(answer(pb::ConfigAppliedResponse { applied }))
    }

    async fn observations(
        &self,
        request: Request<pb::ObservationsRequest>,
    ) -> Result<Response<pb::ObservationsResponse>, Status> {
        let asked = request.into_inner();
        let here = self.all_here(&asked.shards)?;
        let observations = Self::observations_here(here, asked.campaign).await?;
        let observations = observations.into_iter().map(crate::api::admin::convert::observation_out).collect();
        Ok(answer(pb::ObservationsResponse { observations }))
    }

    async fn agent_loads(
        &self,
        request: Request<pb::AgentLoadsRequest>,
    ) -> Result<Response<pb::AgentLoadsResponse>, Status> {
        let here = self.all_here(&request.get_ref().shards)?;
        Ok(answer(super::routing::loads_out(Self::loads_here(&here))))
    }

    async fn top_keys(&self, request: Request<pb::TopKeysRequest>) -> Result<Response<pb::TopKeysResponse>, Status> {
        self.top_keys_here(request.into_inner()).await.map(answer)
    }

    async fn ranked(&self, request: Request<pb::RankedRequest>) -> Result<Response<pb::RankedResponse>, Status> {
        self.ranked_here(request.into_inner()).await.map(answer)
    }

    type AccountSharesStream = Streamed<pb::AccountShare>;

    async fn account_shares(
        &self,
        request: Request<pb::AccountSharesRequest>,
    ) -> Result<Response<Self::AccountSharesStream>, Status> {
        self.account_shares_here(request).await
    }

    type RevocationsStream = Streamed<pb::Revoked>;

    async fn revocations(
        &self,
        request: Request<pb::RevocationsRequest>,
    ) -> Result<Response<Self::RevocationsStream>, Status> {
        let asked = request.into_inner();
        fields::agent_id("agent_id", &asked.agent_id)?;
        let here = self.all_here(&asked.shards)?;
        let parts = self.revocations_here(here, &asked.agent_id)?;
        Ok(Response::new(Box::pin(fan_in(parts))))
    }
}

/// Keeps marks on a shard here, then ends the open leases they make unfit to call.
async fn mark_here(context: Context, do_not_call: Vec<String>, keys: Vec<[u8; 32]>) -> Result<(), Status> {
    tokio::task::spawn_blocking(move || {
        context.store.mark(do_not_call.into_iter().map(Into::into).collect(), keys)?;
        context.dialer.recheck_leases();
        Ok::<_, leadscore_store::StoreError>(())
    })
    .await
    .map_err(|e| Status::internal(format!("keeping marks: {e}")))?
    .map_err(status)
}

impl Front {
    /// The engines here of the shards a forwarded call names; `UNAVAILABLE` if one moved.
    pub(super) fn all_here(&self, shards: &[ShardId]) -> Result<Vec<(ShardId, Context)>, Status> {
        shards.iter().map(|&shard| Ok((shard, self.here(shard)?))).collect()
    }

    /// The revocations of `agent`'s leases on shards here, from now on, each ending when its
    /// shard stops being served here.
    pub(super) fn revocations_here(
        &self,
        here: Vec<(ShardId, Context)>,
        agent: &str,
    ) -> Result<Vec<(String, Streamed<pb::Revoked>)>, Status> {
        let mut parts: Vec<(String, Streamed<pb::Revoked>)> = Vec::new();
        for (shard, context) in here {
            let mut closed = self.0.engines.closed(shard).ok_or_else(|| self.here(shard).unwrap_err())?;
            let until_closed = async move {
                let _ = closed.wait_for(|closed| *closed).await;
            };
            parts.push((format!("shard {shard}"), Box::pin(context.listen(agent).take_until(until_closed))));
        }
        Ok(parts)
    }

    /// Keeps marks on every shard but `origin` (which keeps them with the call that made them),
    /// here and through their owners; answers once every shard has logged them.
    pub(super) async fn mark_elsewhere<T>(
        &self,
        request: &Request<T>,
        origin: ShardId,
        do_not_call: Vec<String>,
        keys: Vec<[u8; 32]>,
    ) -> Result<(), Status> {
        let (here, there) = self.spread((0..self.0.shards).filter(|&s| s != origin), true)?;
        let local = here.into_iter().map(|(_, context)| mark_here(context, do_not_call.clone(), keys.clone()));
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let marks = pb::MarkRequest {
                shards: shards.clone(),
                do_not_call: do_not_call.clone(),
                suppression_keys: keys.iter().map(|k| k.to_vec()).collect(),
            };
            let marks = forwarded(part_of(request, marks), &shards);
            let mut client = ClusterServiceClient::new(channel);
            async move { client.mark(marks).await.map(drop).map_err(|e| unreachable(e, &address)) }
        });
        try_join(try_join_all(local), try_join_all(remote)).await?;
        Ok(())
    }
}
