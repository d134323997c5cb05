//! `ScoringService`: scores on demand (inline or stored leads), explanations, ranking and
//! band-crossing alerts.

pub(crate) mod convert;
pub(crate) mod watch;

use std::collections::HashSet;
use std::pin::Pin;

use leadscore_proto::tonic::{self, Request, Response, Status, codegen::tokio_stream::Stream};
use leadscore_proto::v1 as pb;

use super::answer;
use pb::scoring_service_server::ScoringService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Context;
use super::fields::{self, band_out, batch_len};
use super::pool::{Abandoned, blocking, pooled, run};
use super::status::{invalid, status};
use convert::score_out;
use leadscore_services::scoring::ScoreError;
use leadscore_services::scoring::index::Crossing;
use leadscore_services::scoring::pipeline::Band;
use leadscore_services::scoring::recent::RECENT_CROSSINGS;

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Inline leads a `ScoreBatch` scores on the calling thread (a few microseconds each, so well
/// under a millisecond); larger batches go to the blocking pool.
const INLINE_LEADS: usize = 128;

/// Leads of a large `ScoreBatch` scored between two looks at whether the caller still waits.
const BATCH_STEP: usize = 512;

/// The header of a `TopLeads` answer naming the ranking's change it is current to.
pub const RANKING_SEQ: &str = "leadscore-ranking-seq";

/// Messages a server stream buffers ahead of a slow client.
const STREAM_BUFFER: usize = 256;

#[tonic::async_trait]
impl ScoringService for Context {
    type TopLeadsStream = Streamed<pb::RankedLead>;
    type WatchScoresStream = Streamed<pb::BandCrossing>;
    type WatchTopLeadsStream = Streamed<pb::WatchTopLeadsResponse>;
    type TopAccountsStream = Streamed<pb::RankedAccount>;

    async fn top_accounts(
        &self,
        request: Request<pb::TopAccountsRequest>,
    ) -> Result<Response<Self::TopAccountsStream>, Status> {
        let (campaign, limit, leads) = convert::top_accounts(&request.into_inner())?;
        let scoring = self.scoring.clone();
        let accounts = blocking(move || scoring.top_accounts(&campaign, limit, leads)).await?;
        let ranked = accounts.into_iter().enumerate().map(|(rank, account)| {
            Ok(pb::RankedAccount { rank: rank as u32 + 1, account: Some(convert::account_out(account)) })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(ranked))))
    }

    async fn score_distribution(
        &self,
        request: Request<pb::ScoreDistributionRequest>,
    ) -> Result<Response<pb::ScoreDistributionResponse>, Status> {
        let (campaign, bins) = convert::distribution(&request.into_inner())?;
        let scoring = self.scoring.clone();
        let distribution = blocking(move || scoring.distribution(&campaign, bins, None)).await?;
        Ok(answer(convert::distribution_out(distribution)))
    }

    async fn score_history(
        &self,
        request: Request<pb::ScoreHistoryRequest>,
    ) -> Result<Response<pb::ScoreHistoryResponse>, Status> {
        let request = request.into_inner();
        let (scoring, store) = (self.scoring.clone(), self.store.clone());
        let changes = run(true, move || {
            if !request.campaign.is_empty() {
                scoring.pipeline().campaign_or_error("campaign", &request.campaign)?;
            }
            let changes = scoring.history(&request.lead_id)?;
            let wanted = |campaign: &str| request.campaign.is_empty() || request.campaign == campaign;
            let kind_name = |kind| store.event_kind(kind).to_string();
            Ok::<_, ScoreError>(
                changes
                    .into_iter()
                    .filter(|c| wanted(&c.campaign))
                    .map(|c| convert::change_out(c, kind_name))
                    .collect(),
            )
        })
        .await?;
        Ok(answer(pb::ScoreHistoryResponse { changes }))
    }

    async fn score(&self, request: Request<pb::ScoreRequest>) -> Result<Response<pb::ScoreResponse>, Status> {
        let request = request.into_inner();
        let max_events = self.config.store.max_events_per_lead;
        let now = self.clock.now_ms();
        let lead = convert::inline_lead("", &request, max_events, now)?;
        let scoring = self.scoring.clone();
        let mut scores =
            run(true, move || scoring.score_inline(&[&lead], &request.campaign, request.explain, now)).await?;
        Ok(answer(pb::ScoreResponse { score: scores.pop().map(score_out) }))
    }

    async fn score_batch(
        &self,
        request: Request<pb::ScoreBatchRequest>,
    ) -> Result<Response<pb::ScoreBatchResponse>, Status> {
        let requests = request.into_inner().requests;
        let requests_len = requests.len();
        batch_len("requests", requests_len, self.config.server.max_batch)?;
        let (max_events, now) = (self.config.store.max_events_per_lead, self.clock.now_ms());
        let leads = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                convert::inline_lead(&format_args!("{}.", fields::element("requests", i)), r, max_events, now)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pipeline = self.scoring.pipeline();
        for (i, r) in requests.iter().enumerate() {
            pipeline.campaign_or_error(&format!("requests[{i}].campaign"), &r.campaign).map_err(status)?;
        }
        // Plugin calls per campaign and explain setting, so a batch stays a batch, in steps
        // between which a call nobody waits for any more ends.
        let scoring = self.scoring.clone();
        let score_all = move |abandoned: &Abandoned| {
            let mut out = vec![None; requests.len()];
            let mut groups: Vec<(&str, bool, Vec<usize>)> = Vec::new();
            for (i, r) in requests.iter().enumerate() {
                match groups.iter_mut().find(|(c, e, _)| *c == r.campaign && *e == r.explain) {
                    Some(group) => group.2.push(i),
                    None => groups.push((&r.campaign, r.explain, vec![i])),
                }
            }
            for (campaign, explain, members) in groups {
                for step in members.chunks(BATCH_STEP) {
                    abandoned.check()?;
                    let group: Vec<_> = step.iter().map(|&i| &leads[i]).collect();
                    let scores = scoring.score_inline(&group, campaign, explain, now).map_err(status)?;
                    for (&i, score) in step.iter().zip(scores) {
                        out[i] = Some(score);
                    }
                }
            }
            Ok::<_, Status>(out.into_iter().flatten().collect::<Vec<_>>())
        };
        let scores =
            if requests_len <= INLINE_LEADS { score_all(&Abandoned::default())? } else { pooled(score_all).await? };
        Ok(answer(pb::ScoreBatchResponse { scores: scores.into_iter().map(score_out).collect() }))
    }

    async fn explain(&self, request: Request<pb::ExplainRequest>) -> Result<Response<pb::ExplainResponse>, Status> {
        let request = request.into_inner();
        let id = fields::id("lead_id", &request.lead_id)?;
        let (scoring, dialer) = (self.scoring.clone(), self.dialer.clone());
        // Requeueing the lead waits for a queue being built: then the pool.
        let (score, curve) = run(!self.dialer.is_building(), move || {
            let score = scoring.explain(&id, &request.campaign)?;
            // The fresh score may have moved the lead in its queues.
            dialer.requeue(std::slice::from_ref(&id));
            let curve = request.contact_curve.then(|| dialer.contact_curve(&request.campaign, &id)).flatten();
            Ok::<_, ScoreError>((score, curve))
        })
        .await?;
        let (contact_segment, contact_curve) = match curve {
            Some((segment, curve)) => (segment.to_string(), convert::curve_out(&curve)),
            None => Default::default(),
        };
        Ok(answer(pb::ExplainResponse { score: Some(score_out(score)), contact_curve, contact_segment }))
    }

    async fn top_leads(&self, request: Request<pb::TopLeadsRequest>) -> Result<Response<Self::TopLeadsStream>, Status> {
        let query = convert::top_query(&request.into_inner())?;
        let dialer = self.dialer.clone();
        // Read before the ranking: every change numbered up to it is in the answer.
        let seq = self.scoring.ranking_seq(&query.campaign);
        let leads = blocking(move || dialer.top(&query)).await?;
        // The ranking is already in hand, so it streams straight from memory.
        let ranked = leads
            .into_iter()
            .enumerate()
            .map(|(rank, listed)| Ok(pb::RankedLead { rank: rank as u32 + 1, ..convert::ranked_out(listed) }));
        let mut response = Response::new(Box::pin(tokio_stream::iter(ranked)) as Self::TopLeadsStream);
        if let Some(seq) = seq {
            response.metadata_mut().insert(RANKING_SEQ, seq.into());
        }
        Ok(response)
    }

    async fn watch_top_leads(
        &self,
        request: Request<pb::TopLeadsRequest>,
    ) -> Result<Response<Self::WatchTopLeadsStream>, Status> {
        let query = convert::watch_query(&request.into_inner(), watch::MAX_WATCHED)?;
        let rx = watch::start(self, query, self.closing.clone()).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch_scores(
        &self,
        request: Request<pb::WatchScoresRequest>,
    ) -> Result<Response<Self::WatchScoresStream>, Status> {
        let request = request.into_inner();
        let bands = fields::bands_in("bands", &request.bands)?;
        let pipeline = self.scoring.pipeline();
        let campaign =
            pipeline.campaigns[pipeline.campaign_or_error("campaign", &request.campaign).map_err(status)?].name.clone();
        if request.recent as usize > RECENT_CROSSINGS {
            let rule = format!("at most {RECENT_CROSSINGS}, got {}", request.recent);
            return Err(invalid("recent", &rule, "OUT_OF_RANGE"));
        }
        let wanted = move |band: Option<Band>| band.is_some_and(|b| bands.is_empty() || bands.contains(&b));
        let in_campaign = campaign.clone();
        let wanted = move |c: &Crossing| c.campaign == in_campaign && (wanted(c.from) || wanted(Some(c.to)));
        // Subscribed before the latest are read, so that none falls between them; one read in
        // both is sent once.
        let mut crossings = self.scoring.subscribe();
        let latest = self.scoring.recent_crossings(&campaign, request.recent as usize, &wanted);
        let key = |c: &Crossing| (c.lead_id.clone(), c.at_ms, c.score.to_bits());
        let mut sent: HashSet<_> = latest.iter().map(key).collect();
        let scoring = self.scoring.clone();
        let mut closing = self.closing.clone();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            let out = |c: Crossing| pb::BandCrossing {
                lead_id: c.lead_id.to_string(),
                campaign: c.campaign.to_string(),
                from: band_out(c.from).into(),
                to: band_out(Some(c.to)).into(),
                score: c.score,
                at: Some(fields::timestamp_from_ms(c.at_ms)),
                card: scoring.card(&c.campaign, &c.lead_id).map(convert::card_out),
            };
            for c in latest {
                if tx.send(Ok(out(c))).await.is_err() {
                    return;
                }
            }
            loop {
                let received = tokio::select! {
                    received = crossings.recv() => received,
                    _ = closing.wait_for(|closing| *closing) => return,
                };
                let message = match received {
                    Ok(c) if !wanted(&c) => continue,
                    Ok(c) if !sent.is_empty() && sent.remove(&key(&c)) => continue,
                    Ok(c) => Ok(out(c)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => Err(Status::resource_exhausted(format!(
                        "this watcher fell {missed} crossings behind and was dropped; \
                         watch again and re-read the ranking with TopLeads"
                    ))),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let failed = message.is_err();
                if tx.send(message).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
