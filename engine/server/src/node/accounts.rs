//! `TopAccounts` on a node. An account's leads may be on any shard, so no shard's own ranking
//! of accounts is a part of the answer: each shard gives every account it has leads of its
//! share (their number, their sum, the best of them, the best fit), and the node adds the
//! shares up and scores each account once, by the campaign's roll-up, as one node over every
//! lead does. The answer costs a message per account and shard, not per lead listed.

use futures_util::future::{try_join, try_join_all};
use leadscore_proto::tonic::{Request, Response, Status};
use leadscore_proto::v1 as pb;
use pb::cluster_service_client::ClusterServiceClient;

use super::front::{Front, Streamed, collect, forwarded, part_of, read_here, unreachable};
use crate::api::Context;
use crate::api::pool::blocking;
use crate::api::scoring::convert;
use crate::api::status::status;
use leadscore_cluster::ShardId;
use leadscore_services::scoring::{AccountScore, AccountShare};

/// As many of an account's leads as `TopAccounts` lists.
const MAX_LEADS_PER_ACCOUNT: u32 = 100;

impl Front {
    /// The campaign's best accounts over every shard, ranked.
    pub(super) async fn top_accounts_gathered(
        &self,
        request: Request<pb::TopAccountsRequest>,
    ) -> Result<Response<Streamed<pb::RankedAccount>>, Status> {
        let (campaign, limit, leads) = convert::top_accounts(request.get_ref())?;
        let accounts = self.accounts_of_shares(&request, campaign, limit, leads, None).await?;
        let ranked = accounts.into_iter().enumerate().map(|(rank, account)| {
            Ok(pb::RankedAccount { rank: rank as u32 + 1, account: Some(convert::account_out(account)) })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(ranked))))
    }

    /// One account's score over every shard, as `Explain` gives a lead's (no leads listed).
    pub(super) async fn account_gathered<T>(
        &self,
        request: &Request<T>,
        campaign: String,
        account: String,
    ) -> Result<Option<pb::AccountScore>, Status> {
        let accounts = self.accounts_of_shares(request, campaign, 1, 0, Some(account)).await?;
        Ok(accounts.into_iter().next().map(convert::account_out))
    }

    /// The best `limit` accounts of the shards `request` is for (only `only`, if given), each
    /// with `leads` of its best leads, made from every shard's shares.
    async fn accounts_of_shares<T>(
        &self,
        request: &Request<T>,
        campaign: String,
        limit: usize,
        leads: usize,
        only: Option<String>,
    ) -> Result<Vec<AccountScore>, Status> {
        let scoring = self.0.engines.any().ok_or_else(|| {
            Status::unavailable("this node serves no shard yet, so it cannot score accounts; try another node")
        })?;
        let (here, there) = self.parts(request)?;
        let local = Self::shares_here(here, campaign.clone(), leads, only.clone());
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let asking = pb::AccountSharesRequest {
                campaign: campaign.clone(),
                leads_per_account: leads as u32,
                shards: shards.clone(),
                account: only.clone().unwrap_or_default(),
            };
            let asking = forwarded(part_of(request, asking), &shards);
            let mut client = ClusterServiceClient::new(channel).max_decoding_message_size(self.0.max_message_bytes);
            async move {
                let shares = async { collect(client.account_shares(asking).await?.into_inner()).await };
                shares.await.map_err(|e| unreachable(e, &address))
            }
        });
        let (local, remote) = try_join(local, try_join_all(remote)).await?;
        let shares = local.into_iter().chain(remote.into_iter().flatten().map(share_in)).collect();
        blocking(move || scoring.scoring.top_of_shares(&campaign, shares, limit, leads)).await
    }

    /// The shares of every account (or only `only`) on the shards here.
    async fn shares_here(
        here: Vec<(ShardId, Context)>,
        campaign: String,
        leads: usize,
        only: Option<String>,
    ) -> Result<Vec<AccountShare>, Status> {
        let each = read_here(here, "reading account shares", move |_, context| {
            context.scoring.account_shares(&campaign, leads, only.as_deref()).map_err(status)
        });
        Ok(each.await?.into_iter().flatten().collect())
    }

    /// `ClusterService.AccountShares`: the shares of the shards a forwarded call names.
    pub(super) async fn account_shares_here(
        &self,
        request: Request<pb::AccountSharesRequest>,
    ) -> Result<Response<Streamed<pb::AccountShare>>, Status> {
        let asked = request.into_inner();
        if asked.leads_per_account > MAX_LEADS_PER_ACCOUNT {
            let rule = format!("must be 0-{MAX_LEADS_PER_ACCOUNT}, got {}", asked.leads_per_account);
            return Err(Status::invalid_argument(format!("leads_per_account: {rule}")));
        }
        let here = self.all_here(&asked.shards)?;
        let only = (!asked.account.is_empty()).then_some(asked.account);
        let shares = Self::shares_here(here, asked.campaign, asked.leads_per_account as usize, only).await?;
        Ok(Response::new(Box::pin(tokio_stream::iter(shares.into_iter().map(|share| Ok(share_out(share)))))))
    }
}

pub(super) fn share_out(share: AccountShare) -> pb::AccountShare {
    pb::AccountShare {
        account: share.account.to_string(),
        leads: share.leads as u32,
        sum: share.sum,
        best: share
            .best
            .into_iter()
            .map(|(id, score)| pb::AccountLead { lead_id: id.to_string(), score, band: 0 })
            .collect(),
        fit: share.fit,
    }
}

pub(super) fn share_in(share: pb::AccountShare) -> AccountShare {
    AccountShare {
        account: share.account.into(),
        leads: share.leads as usize,
        sum: share.sum,
        best: share.best.into_iter().map(|lead| (lead.lead_id.as_str().into(), lead.score)).collect(),
        fit: share.fit,
    }
}
