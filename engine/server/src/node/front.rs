//! A cluster node's lead and scoring services: each call goes to the engines of the shards it
//! concerns, here or on their owners.
//!
//! - A call about one lead is served by its shard's engine, here, or forwarded to the owner.
//! - A batch is checked whole first (a bad field fails the call before anything is written),
//!   then split by shard; each shard's part is applied atomically, and the parts concurrently.
//!   An import streams each shard's rows to its engine with the caller's line numbers.
//! - A ranking gathers every shard's own top k and merges them: the global top k is in that
//!   merge. A shard nobody answers for makes the call UNAVAILABLE, naming it.
//! - A watch fans in every shard's crossings and ends when any of its shards moves.
//!
//! A forwarded call names the shards it is for (`leadscore-shards`), and the node that
//! receives it serves exactly those from its own engines or refuses: a call is forwarded once,
//! and a stale directory costs a retry, never a wrong answer.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::future::{try_join, try_join_all};
use leadscore_proto::tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use leadscore_proto::tonic::{self, Code, Request, Response, Status, Streaming};
use leadscore_proto::v1 as pb;

use crate::api::answer;
use pb::lead_service_client::LeadServiceClient;
use pb::lead_service_server::LeadService;
use pb::scoring_service_client::ScoringServiceClient;
use pb::scoring_service_server::ScoringService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::engines::Engines;
use super::top;
use crate::api::Context;
use crate::api::dialer::session;
use crate::api::fields::{self, batch_len};
use crate::api::scoring::RANKING_SEQ;
use crate::api::status::detailed;
use crate::api::status::status;
use crate::api::{lead, scoring};
use leadscore_cluster::{Directory, ShardId, shard_of};
use leadscore_store::clock::Clock;

/// The shards a forwarded call is for, comma-separated.
pub(super) const SHARDS: &str = "leadscore-shards";

/// Bounds on a forwarded call: connecting, a silent connection, and the whole call.
const FORWARD_CONNECT: Duration = Duration::from_secs(1);
const FORWARD_KEEPALIVE: Duration = Duration::from_secs(2);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// A cluster node's services.
#[derive(Clone)]
pub struct Front(pub(super) Arc<Inner>);

pub(super) struct Inner {
    pub(super) node: String,
    pub(super) shards: u32,
    pub(super) engines: Arc<Engines>,
    pub(super) directory: Directory,
    /// One connection per node, made on first use.
    channels: Mutex<HashMap<String, Channel>>,
    pub(super) max_message_bytes: usize,
    pub(super) max_batch: usize,
    pub(super) clock: Arc<dyn Clock>,
    /// What a hopper session keeps to.
    pub(super) session: session::Limits,
    /// How to call the other nodes when they serve TLS; renewed on SIGHUP (`renew_peer_tls`).
    peer_tls: Mutex<Option<ClientTlsConfig>>,
    /// Per agent claiming here, what makes its claims one at a time (see `dialing`).
    pub(super) claiming: Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
}

/// Per other node, the shards of a gathered call it serves.
pub(super) type Elsewhere = BTreeMap<String, (Channel, Vec<ShardId>)>;

/// Crossings a watch buffers from its parts ahead of a slow client.
const FAN_IN_BUFFER: usize = 256;

/// Where a shard's part of a call is served.
pub(super) enum Part {
    Here(Context),
    There { address: String, channel: Channel },
}

impl Front {
    pub fn new(
        node: String,
        shards: u32,
        engines: Arc<Engines>,
        directory: Directory,
        config: &leadscore_config::Config,
        clock: Arc<dyn Clock>,
        peer_tls: Option<ClientTlsConfig>,
    ) -> Self {
        Self(Arc::new(Inner {
            node,
            shards,
            engines,
            directory,
            channels: Mutex::new(HashMap::new()),
            max_message_bytes: config.server.max_message_bytes,
            max_batch: config.server.max_batch,
            clock,
            session: session::Limits::of(&config.dialer),
            peer_tls: Mutex::new(peer_tls),
            claiming: Mutex::new(HashMap::new()),
        }))
    }

    pub(super) fn shard(&self, lead_id: &str) -> ShardId {
        shard_of(lead_id, self.0.shards)
    }

    /// A batch's items by the shard of the lead each names.
    fn by_shard<T: Clone>(&self, items: &[T], lead_id: impl Fn(&T) -> &str) -> BTreeMap<ShardId, Vec<T>> {
        let mut parts: BTreeMap<ShardId, Vec<T>> = BTreeMap::new();
        for item in items {
            parts.entry(self.shard(lead_id(item))).or_default().push(item.clone());
        }
        parts
    }

    /// Where `shard` is served; a forwarded call is served here or not at all.
    pub(super) fn part<T>(&self, shard: ShardId, request: &Request<T>) -> Result<Part, Status> {
        self.place(shard, !request.metadata().contains_key(SHARDS))
    }

    pub(super) fn place(&self, shard: ShardId, may_forward: bool) -> Result<Part, Status> {
        let here = self.here(shard);
        if here.is_ok() || !may_forward {
            return here.map(Part::Here);
        }
        let owner =
            self.0.directory.owner(shard).filter(|owner| owner.node != self.0.node).ok_or_else(|| here.unwrap_err())?;
        Ok(Part::There { channel: self.channel(&owner.address)?, address: owner.address })
    }

    /// The engine of `shard` on this node.
    pub(super) fn here(&self, shard: ShardId) -> Result<Context, Status> {
        self.0.engines.get(shard).ok_or_else(|| {
            let message =
                format!("shard {shard} is not served by node {}: its owner is changing; try again", self.0.node);
            shard_unavailable(message, &shard.to_string())
        })
    }

    pub(super) fn channel(&self, address: &str) -> Result<Channel, Status> {
        let mut channels = self.0.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let peer_tls = self.0.peer_tls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // A node that died or hangs is noticed within seconds, not at the caller's deadline.
        let scheme = if peer_tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| Status::internal(format!("node address {address:?}: {e}")))?;
        if let Some(tls) = peer_tls {
            endpoint =
                endpoint.tls_config(tls).map_err(|e| Status::internal(format!("TLS to the node at {address}: {e}")))?;
        }
        let endpoint = endpoint
            .tcp_nodelay(true)
            .connect_timeout(FORWARD_CONNECT)
            .http2_keep_alive_interval(FORWARD_KEEPALIVE)
            .keep_alive_timeout(FORWARD_KEEPALIVE)
            .keep_alive_while_idle(true)
            .timeout(FORWARD_TIMEOUT);
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Calls the other nodes with `tls` from now on: the connections made with the old are
    /// dropped once the calls on them end, and new ones are made on first use.
    pub(super) fn renew_peer_tls(&self, tls: Option<ClientTlsConfig>) {
        *self.0.peer_tls.lock().unwrap_or_else(|e| e.into_inner()) = tls;
        self.0.channels.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The shards a call concerns: those a forwarded call names, or every shard.
    pub(super) fn scope<T>(&self, request: &Request<T>) -> Result<Vec<ShardId>, Status> {
        let Some(named) = request.metadata().get(SHARDS) else { return Ok((0..self.0.shards).collect()) };
        let named = named.to_str().map_err(|_| Status::invalid_argument(format!("{SHARDS}: not text")))?;
        named
            .split(',')
            .map(|s| s.parse::<ShardId>().ok().filter(|&s| s < self.0.shards))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Status::invalid_argument(format!("{SHARDS}: not a list of shards: {named:?}")))
    }

    /// Each shard's part of a gathered call: the engines here, one by one, and per other node
    /// the shards it serves, named in one forwarded call.
    pub(super) fn parts<T>(&self, request: &Request<T>) -> Result<(Vec<(ShardId, Context)>, Elsewhere), Status> {
        self.spread(self.scope(request)?, !request.metadata().contains_key(SHARDS))
    }

    /// `shards` by where they are served; `UNAVAILABLE` naming those nobody serves now.
    pub(super) fn spread(
        &self,
        shards: impl IntoIterator<Item = ShardId>,
        may_forward: bool,
    ) -> Result<(Vec<(ShardId, Context)>, Elsewhere), Status> {
        let mut here = Vec::new();
        let mut there = Elsewhere::new();
        let mut missing = Vec::new();
        for shard in shards {
            match self.place(shard, may_forward) {
                Ok(Part::Here(context)) => here.push((shard, context)),
                Ok(Part::There { address, channel }) => {
                    there.entry(address).or_insert((channel, Vec::new())).1.push(shard)
                }
                Err(_) => missing.push(shard),
            }
        }
        if !missing.is_empty() {
            let message =
                format!("shards {} have no owner reachable from node {} now; try again", list(&missing), self.0.node);
            return Err(shard_unavailable(message, &list(&missing)));
        }
        Ok((here, there))
    }

    pub(super) fn lead_client(&self, channel: Channel) -> LeadServiceClient<Channel> {
        let max = self.0.max_message_bytes;
        LeadServiceClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }

    fn scoring_client(&self, channel: Channel) -> ScoringServiceClient<Channel> {
        let max = self.0.max_message_bytes;
        ScoringServiceClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }
}

impl crate::console::Services for Front {
    fn campaign_names(&self) -> Result<Vec<String>, Status> {
        let context = self.0.engines.any().ok_or_else(|| {
            Status::unavailable("this node serves no shard yet, so it cannot name the campaigns; try again")
        })?;
        context.campaign_names()
    }
}

pub(super) fn list(shards: &[ShardId]) -> String {
    shards.iter().map(ShardId::to_string).collect::<Vec<_>>().join(",")
}

/// `message` with the caller's metadata (token, deadline) and extensions, for a part of its call.
pub(super) fn part_of<T, U>(request: &Request<T>, message: U) -> Request<U> {
    let mut part = Request::from_parts(request.metadata().clone(), request.extensions().clone(), message);
    own_encoding(&mut part);
    part
}

/// Drops the caller's compression headers from a call to another node: they were between the
/// caller and this node (a caller that accepts gzip would have the other node answer this one
/// in gzip, which it does not take); a call between nodes goes plain.
fn own_encoding<T>(request: &mut Request<T>) {
    for header in ["grpc-accept-encoding", "grpc-encoding"] {
        request.metadata_mut().remove(header);
    }
}

/// `request` as forwarded to the node serving `shards`.
pub(super) fn forwarded<T>(mut request: Request<T>, shards: &[ShardId]) -> Request<T> {
    own_encoding(&mut request);
    let named = list(shards).parse().expect("digits and commas are valid metadata");
    request.metadata_mut().insert(SHARDS, named);
    request
}

/// Every shard's answer to a call of `$service`, as an iterator: each engine's here, and one per
/// other node, which answers for the shards the forwarded call names (with `collect`, a
/// streamed answer's items gathered).
macro_rules! every_shard {
    ($front:expr, $request:expr, $message:expr, $service:ident, $client:ident, $method:ident $(, $collect:ident)?) => {{
        let (here, there) = $front.parts(&$request)?;
        let local = here.into_iter().map(|(_, context)| {
            let part = part_of(&$request, $message);
            async move {
                let answer = <Context as $service>::$method(&context, part).await?.into_inner();
                Ok::<_, Status>(every_shard!(@answer answer $(, $collect)?))
            }
        });
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let part = forwarded(part_of(&$request, $message), &shards);
            let mut client = $front.$client(channel);
            async move {
                let unreached = |e| unreachable(e, &address);
                let answer = client.$method(part).await.map_err(unreached)?.into_inner();
                Ok::<_, Status>(every_shard!(@answer answer $(, $collect)?))
            }
        });
        let (local, remote) = try_join(try_join_all(local), try_join_all(remote)).await?;
        local.into_iter().chain(remote)
    }};
    (@answer $answer:ident) => { $answer };
    (@answer $answer:ident, collect) => {
        $answer.collect::<Vec<_>>().await.into_iter().collect::<Result<Vec<_>, Status>>()?
    };
}

/// A call for one shard: served by its engine here, or forwarded to its owner.
macro_rules! one_shard {
    ($front:expr, $request:expr, $shard:expr, $service:ident, $client:ident, $method:ident) => {{
        let shard = $shard;
        match $front.part(shard, &$request)? {
            Part::Here(context) => <Context as $service>::$method(&context, $request).await,
            Part::There { channel, address } => $front
                .$client(channel)
                .$method(forwarded($request, &[shard]))
                .await
                .map_err(|e| unreachable(e, &address)),
        }
    }};
}

/// A call about one lead, served by its shard.
macro_rules! one_lead {
    ($front:expr, $request:expr, $lead_id:expr, $service:ident, $client:ident, $method:ident) => {{ one_shard!($front, $request, $front.shard($lead_id), $service, $client, $method) }};
}

/// A call that needs an engine but no particular shard (inline scoring): here if this node
/// serves any, else on shard 0's owner.
macro_rules! any_engine {
    ($front:expr, $request:expr, $service:ident, $client:ident, $method:ident) => {{
        match $front.0.engines.any() {
            Some(context) => <Context as $service>::$method(&context, $request).await,
            None => match $front.part(0, &$request)? {
                Part::Here(context) => <Context as $service>::$method(&context, $request).await,
                Part::There { channel, address } => $front
                    .$client(channel)
                    .$method(forwarded($request, &[0]))
                    .await
                    .map_err(|e| unreachable(e, &address)),
            },
        }
    }};
}

/// A forwarded call's failure as the caller should see it: a node that cannot be reached is
/// `UNAVAILABLE` (its shards move within a lease), not the transport's `UNKNOWN`.
pub(super) fn unreachable(status: Status, address: &str) -> Status {
    let transport = std::error::Error::source(&status)
        .is_some_and(|source| source.downcast_ref::<tonic::transport::Error>().is_some());
    match transport {
        true => {
            let message = format!(
                "the node at {address} serving the shard cannot be reached now ({}); try again",
                status.message()
            );
            detailed(
                Code::Unavailable,
                message,
                "NODE_UNREACHABLE",
                &[("node_address", address.to_owned())],
                Default::default(),
            )
        }
        false => status,
    }
}

/// UNAVAILABLE for shards that are moving or have no reachable owner: a retry finds them.
fn shard_unavailable(message: String, shards: &str) -> Status {
    detailed(Code::Unavailable, message, "SHARD_UNAVAILABLE", &[("shards", shards.to_owned())], Default::default())
}

#[tonic::async_trait]
impl LeadService for Front {
    async fn upsert_leads(
        &self,
        request: Request<pb::UpsertLeadsRequest>,
    ) -> Result<Response<pb::UpsertLeadsResponse>, Status> {
        lead::convert::upsert_batch(&request.get_ref().leads, self.0.max_batch)?;
        let calls = self.by_shard(&request.get_ref().leads, |lead| &lead.id).into_iter().map(|(shard, leads)| {
            let part = part_of(&request, pb::UpsertLeadsRequest { leads });
            async move { one_shard!(self, part, shard, LeadService, lead_client, upsert_leads) }
        });
        let mut total = pb::UpsertLeadsResponse::default();
        for done in try_join_all(calls).await? {
            total.created += done.get_ref().created;
            total.updated += done.get_ref().updated;
        }
        Ok(answer(total))
    }

    async fn get_lead(&self, request: Request<pb::GetLeadRequest>) -> Result<Response<pb::GetLeadResponse>, Status> {
        let id = request.get_ref().id.clone();
        fields::id("id", &id)?;
        one_lead!(self, request, &id, LeadService, lead_client, get_lead)
    }

    async fn record_events(
        &self,
        request: Request<pb::RecordEventsRequest>,
    ) -> Result<Response<pb::RecordEventsResponse>, Status> {
        let events = &request.get_ref().events;
        batch_len("events", events.len(), self.0.max_batch)?;
        let now = self.0.clock.now_ms();
        for (i, event) in events.iter().enumerate() {
            lead::convert::event_input(&fields::element("events", i), event, None, now)?;
        }
        let calls = self.by_shard(events, |event| &event.lead_id).into_iter().map(|(shard, events)| {
            let part = part_of(&request, pb::RecordEventsRequest { events });
            async move { one_shard!(self, part, shard, LeadService, lead_client, record_events) }
        });
        let mut total = pb::RecordEventsResponse::default();
        for done in try_join_all(calls).await? {
            total.recorded += done.get_ref().recorded;
            total.duplicates += done.get_ref().duplicates;
        }
        Ok(answer(total))
    }

    async fn import_leads(
        &self,
        request: Request<Streaming<pb::ImportLeadsRequest>>,
    ) -> Result<Response<pb::ImportLeadsResponse>, Status> {
        self.import(request).await.map(Response::new)
    }

    async fn erase_lead(
        &self,
        request: Request<pb::EraseLeadRequest>,
    ) -> Result<Response<pb::EraseLeadResponse>, Status> {
        let id = request.get_ref().id.clone();
        fields::id("id", &id)?;
        let shard = self.shard(&id);
        match self.part(shard, &request)? {
            // Every other shard keeps the erased person's keys first: once the erasure is
            // acknowledged, no shard takes them back.
            Part::Here(context) => {
                if let Some(keys) = context.store.erasure_keys(&id) {
                    self.mark_elsewhere(&request, shard, Vec::new(), keys).await?;
                }
                <Context as LeadService>::erase_lead(&context, request).await
            }
            Part::There { channel, address } => self
                .lead_client(channel)
                .erase_lead(forwarded(request, &[shard]))
                .await
                .map_err(|e| unreachable(e, &address)),
        }
    }
}

pub(super) type Streamed<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ScoringService for Front {
    type TopLeadsStream = Streamed<pb::RankedLead>;
    type WatchScoresStream = Streamed<pb::BandCrossing>;
    type TopAccountsStream = Streamed<pb::RankedAccount>;
    type WatchTopLeadsStream = Streamed<pb::WatchTopLeadsResponse>;

    /// Every shard's watched list merged into one (see `top`), ending when any shard moves.
    async fn watch_top_leads(
        &self,
        request: Request<pb::TopLeadsRequest>,
    ) -> Result<Response<Self::WatchTopLeadsStream>, Status> {
        let limit = scoring::convert::watch_query(request.get_ref(), scoring::watch::MAX_WATCHED)?.limit;
        let parts = self
            .watches(
                &request,
                |context, part| async move {
                    Ok(<Context as ScoringService>::watch_top_leads(&context, part).await?.into_inner())
                },
                |channel, part| async move { self.scoring_client(channel).watch_top_leads(part).await },
            )
            .await?;
        Ok(Response::new(Box::pin(top::watch_merged(parts, limit))))
    }

    async fn score(&self, request: Request<pb::ScoreRequest>) -> Result<Response<pb::ScoreResponse>, Status> {
        any_engine!(self, request, ScoringService, scoring_client, score)
    }

    async fn score_batch(
        &self,
        request: Request<pb::ScoreBatchRequest>,
    ) -> Result<Response<pb::ScoreBatchResponse>, Status> {
        any_engine!(self, request, ScoringService, scoring_client, score_batch)
    }

    async fn explain(&self, request: Request<pb::ExplainRequest>) -> Result<Response<pb::ExplainResponse>, Status> {
        let id = request.get_ref().lead_id.clone();
        fields::id("lead_id", &id)?;
        // The lead's shard knows only its own share of the lead's account: the node first asked
        // puts every shard's together.
        let (gathers, asked) = (!request.metadata().contains_key(SHARDS), part_of(&request, ()));
        let campaign = request.get_ref().campaign.clone();
        let mut answer = one_lead!(self, request, &id, ScoringService, scoring_client, explain)?;
        let score = answer.get_mut().score.as_mut();
        if let Some(score) = score.filter(|score| gathers && score.account.is_some()) {
            let account = score.account.take().map(|a| a.account).unwrap_or_default();
            score.account = self.account_gathered(&asked, campaign, account).await?;
        }
        Ok(answer)
    }

    async fn score_history(
        &self,
        request: Request<pb::ScoreHistoryRequest>,
    ) -> Result<Response<pb::ScoreHistoryResponse>, Status> {
        let id = request.get_ref().lead_id.clone();
        fields::id("lead_id", &id)?;
        one_lead!(self, request, &id, ScoringService, scoring_client, score_history)
    }

    async fn top_leads(&self, request: Request<pb::TopLeadsRequest>) -> Result<Response<Self::TopLeadsStream>, Status> {
        let (ranked, seq) = self.top_leads_gathered(&request).await?;
        let mut response =
            Response::new(Box::pin(tokio_stream::iter(ranked.into_iter().map(Ok))) as Self::TopLeadsStream);
        // The list is current to the sum of the shards' seqs, as a watched list's is (see `top`).
        if let Some(seq) = seq {
            response.metadata_mut().insert(RANKING_SEQ, seq.into());
        }
        Ok(response)
    }

    /// Every shard's crossings in one stream. The watch ends, `UNAVAILABLE`, as soon as any
    /// shard in it moves or its node stops: the client watches again and gets the shards where
    /// they are now, rather than a watch that silently misses some.
    async fn watch_scores(
        &self,
        request: Request<pb::WatchScoresRequest>,
    ) -> Result<Response<Self::WatchScoresStream>, Status> {
        fields::bands_in("bands", &request.get_ref().bands)?;
        let parts = self
            .watches(
                &request,
                |context, part| async move {
                    Ok(<Context as ScoringService>::watch_scores(&context, part).await?.into_inner())
                },
                |channel, part| async move { self.scoring_client(channel).watch_scores(part).await },
            )
            .await?;
        Ok(Response::new(Box::pin(fan_in(parts))))
    }

    async fn top_accounts(
        &self,
        request: Request<pb::TopAccountsRequest>,
    ) -> Result<Response<Self::TopAccountsStream>, Status> {
        self.top_accounts_gathered(request).await
    }

    /// Every shard's histogram added up. Bins add up only over one top, so when the shards'
    /// tops differ (their best scores do), each is asked again up to the highest.
    async fn score_distribution(
        &self,
        request: Request<pb::ScoreDistributionRequest>,
    ) -> Result<Response<pb::ScoreDistributionResponse>, Status> {
        let (campaign, bins) = scoring::convert::distribution(request.get_ref())?;
        let mut parts = self.distributions(&request, &campaign, bins, None).await?;
        let top_of = |part: &pb::ScoreDistributionResponse| part.bins.last().map_or(0.0, |bin| bin.high);
        let top = parts.iter().map(top_of).fold(0.0, f64::max);
        if parts.iter().any(|part| top_of(part) != top) {
            parts = self.distributions(&request, &campaign, bins, Some(top)).await?;
        }
        let mut parts = parts.into_iter();
        let first = parts.next().ok_or_else(|| Status::internal("a distribution of no shard"))?;
        Ok(answer(parts.fold(first, add_distribution)))
    }
}

impl Front {
    /// Each shard's watch, named: the engines' here, each ending when its shard moves away, and
    /// one per other node for the shards it serves.
    pub(super) async fn watches<M, T, Here, There>(
        &self,
        request: &Request<M>,
        here: impl Fn(Context, Request<M>) -> Here,
        there: impl Fn(Channel, Request<M>) -> There,
    ) -> Result<Vec<(String, Streamed<T>)>, Status>
    where
        M: Clone,
        T: Send + 'static,
        Here: Future<Output = Result<Streamed<T>, Status>>,
        There: Future<Output = Result<Response<Streaming<T>>, Status>>,
    {
        let (local, remote) = self.parts(request)?;
        let mut parts: Vec<(String, Streamed<T>)> = Vec::new();
        for (shard, context) in local {
            let mut closed = self.0.engines.closed(shard).ok_or_else(|| self.here(shard).unwrap_err())?;
            let watched = here(context, part_of(request, request.get_ref().clone())).await?;
            let until_closed = async move {
                let _ = closed.wait_for(|closed| *closed).await;
            };
            parts.push((format!("shard {shard}"), Box::pin(watched.take_until(until_closed))));
        }
        for (address, (channel, shards)) in remote {
            let part = forwarded(part_of(request, request.get_ref().clone()), &shards);
            let watched = there(channel, part).await.map_err(|e| unreachable(e, &address))?;
            let watched = watched.into_inner().map(move |item| item.map_err(|e| unreachable(e, &address)));
            parts.push((format!("shards {}", list(&shards)), Box::pin(watched)));
        }
        Ok(parts)
    }

    /// Each shard's distribution, binned up to `top` if given.
    async fn distributions<T>(
        &self,
        request: &Request<T>,
        campaign: &str,
        bins: usize,
        top: Option<f64>,
    ) -> Result<Vec<pb::ScoreDistributionResponse>, Status> {
        let (here, there) = self.parts(request)?;
        let local = Self::distributions_here(here, campaign.to_owned(), bins, top);
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let asking = pb::DistributionsRequest {
                campaign: campaign.to_owned(),
                bins: bins as u32,
                top,
                shards: shards.clone(),
            };
            let asking = forwarded(part_of(request, asking), &shards);
            let mut client = pb::cluster_service_client::ClusterServiceClient::new(channel)
                .max_decoding_message_size(self.0.max_message_bytes);
            async move {
                let answer = client.distributions(asking).await.map_err(|e| unreachable(e, &address))?;
                Ok::<_, Status>(answer.into_inner().shards)
            }
        });
        let (local, remote) = try_join(local, try_join_all(remote)).await?;
        Ok(local.into_iter().chain(remote.into_iter().flatten()).collect())
    }

    /// The distributions of shards here.
    pub(super) async fn distributions_here(
        here: Vec<(ShardId, Context)>,
        campaign: String,
        bins: usize,
        top: Option<f64>,
    ) -> Result<Vec<pb::ScoreDistributionResponse>, Status> {
        read_here(here, "reading distributions", move |_, context| {
            let distribution = context.scoring.distribution(&campaign, bins, top).map_err(status)?;
            Ok(scoring::convert::distribution_out(distribution))
        })
        .await
    }
}

/// A short read of each shard here (a look at an index or a queue), all in one blocking task:
/// one hop to the pool, not one per shard.
pub(super) async fn read_here<T: Send + 'static>(
    here: Vec<(ShardId, Context)>,
    what: &'static str,
    read: impl Fn(ShardId, &Context) -> Result<T, Status> + Send + 'static,
) -> Result<Vec<T>, Status> {
    let all = move || here.iter().map(|(shard, context)| read(*shard, context)).collect::<Result<Vec<_>, Status>>();
    tokio::task::spawn_blocking(all).await.map_err(|e| Status::internal(format!("{what}: {e}")))?
}

/// Two shards' distributions over the same bins as one.
fn add_distribution(
    mut total: pb::ScoreDistributionResponse,
    part: pb::ScoreDistributionResponse,
) -> pb::ScoreDistributionResponse {
    let add = |sum: &mut Vec<u64>, counts: Vec<u64>| {
        sum.resize(sum.len().max(counts.len()), 0);
        sum.iter_mut().zip(counts).for_each(|(s, n)| *s += n);
    };
    total.leads += part.leads;
    total.without_points += part.without_points;
    total.new_hot_last_day += part.new_hot_last_day;
    total.new_hot_last_week += part.new_hot_last_week;
    for (sum, bin) in total.bins.iter_mut().zip(part.bins) {
        add(&mut sum.by_band, bin.by_band);
    }
    for (sum, band) in total.bands.iter_mut().zip(part.bands) {
        sum.leads += band.leads;
    }
    for grade in part.grades {
        match total.grades.iter_mut().find(|g| g.grade == grade.grade) {
            Some(known) => known.leads += grade.leads,
            None => total.grades.push(grade),
        }
    }
    // Best first: letters A-D then '-', numbers 1-4 then '-', as one node orders them.
    let place = |grade: &str| grade.chars().map(|c| "ABCD-".find(c).or_else(|| "1234-".find(c))).collect::<Vec<_>>();
    total.grades.sort_by_key(|g| place(&g.grade));
    total
}

/// The parts' items as they come, ending at the first part that ends or fails.
pub(super) fn fan_in<T: Send + 'static>(
    parts: Vec<(String, Streamed<T>)>,
) -> impl tokio_stream::Stream<Item = Result<T, Status>> {
    let (sender, receiver) = mpsc::channel(FAN_IN_BUFFER);
    for (what, mut part) in parts {
        let sender = sender.clone();
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    item = part.next() => item,
                    () = sender.closed() => return,
                };
                let ended = match item {
                    Some(Ok(item)) => Ok(item),
                    Some(Err(status)) => Err(status),
                    None => Err(Status::unavailable(format!(
                        "{what} of this stream moved or its node stops; open it again"
                    ))),
                };
                let last = ended.is_err();
                if sender.send(ended).await.is_err() || last {
                    return;
                }
            }
        });
    }
    ReceiverStream::new(receiver).scan(false, |ended, item| {
        let done = std::mem::replace(ended, item.is_err());
        std::future::ready((!done).then_some(item))
    })
}

pub(super) async fn collect<T>(
    mut stream: impl tokio_stream::Stream<Item = Result<T, Status>> + Unpin,
) -> Result<Vec<T>, Status> {
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item?);
    }
    Ok(items)
}
