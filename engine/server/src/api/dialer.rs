//! `DialerService`: the next best lead, outcomes, releases, and the hopper stream.

pub(crate) mod convert;
pub(crate) mod session;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use leadscore_proto::tonic::{self, Request, Response, Status, Streaming, codegen::tokio_stream::Stream};
use leadscore_proto::v1 as pb;

use super::answer;
use pb::dialer_service_server::DialerService;

use super::Context;
use super::fields::{self, timestamp_from_ms};
use super::pool::{blocking, run};
use super::status::status;
use leadscore_services::dialer::revocations::Listener;
use leadscore_services::dialer::{Claimed, DialError, Dialer, Dry, Next, Recorded};
use leadscore_store::FsyncPolicy;
use session::SessionStream;

#[tonic::async_trait]
impl DialerService for Context {
    type DialerSessionStream = SessionStream;

    async fn next_lead(&self, request: Request<pb::NextLeadRequest>) -> Result<Response<pb::NextLeadResponse>, Status> {
        let request = request.into_inner();
        let agent = fields::agent_id("agent_id", &request.agent_id)?;
        loop {
            let next = Next::of_one(self.next_leads(request.campaign.clone(), agent.to_string(), 1).await?);
            // A lead erased since its claim is not offered: the next one is.
            if let Some(out) = self.next_out(next) {
                return Ok(answer(out));
            }
        }
    }

    async fn report_outcome(
        &self,
        request: Request<pb::ReportOutcomeRequest>,
    ) -> Result<Response<pb::ReportOutcomeResponse>, Status> {
        let report = convert::outcome_in("outcome", request.into_inner().outcome.as_ref(), self.clock.now_ms())?;
        let dialer = self.dialer.clone();
        let recorded = self.quickly(move || dialer.report(report)).await?;
        Ok(answer(outcome_out(recorded)))
    }

    async fn wallboard(
        &self,
        request: Request<pb::WallboardRequest>,
    ) -> Result<Response<pb::WallboardResponse>, Status> {
        let request = request.into_inner();
        let minutes = convert::wallboard_minutes(request.minutes)?;
        let dialer = self.dialer.clone();
        let board = blocking(move || dialer.wallboard(&request.campaign, minutes)).await?;
        Ok(answer(convert::wallboard_out(board)))
    }

    async fn contact_rates(
        &self,
        request: Request<pb::ContactRatesRequest>,
    ) -> Result<Response<pb::ContactRatesResponse>, Status> {
        let request = request.into_inner();
        let dialer = self.dialer.clone();
        let segment = request.segment.clone();
        let rates = blocking(move || dialer.contact_rates(&request.campaign, &request.segment)).await?;
        Ok(answer(convert::rates_out(&rates, &segment)))
    }

    async fn release_lead(
        &self,
        request: Request<pb::ReleaseLeadRequest>,
    ) -> Result<Response<pb::ReleaseLeadResponse>, Status> {
        let lease_id = convert::lease_id(request.into_inner().lease_id)?;
        let dialer = self.dialer.clone();
        self.quickly(move || dialer.release(&lease_id)).await?;
        Ok(answer(pb::ReleaseLeadResponse {}))
    }

    async fn dialer_session(
        &self,
        request: Request<Streaming<pb::DialerRequest>>,
    ) -> Result<Response<Self::DialerSessionStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = session::hello(&mut inbound).await?;
        let pipeline = self.scoring.pipeline();
        let campaign = pipeline.campaign_or_error("hello.campaign", &hello.campaign).map_err(status)?;
        let campaign = pipeline.campaigns[campaign].name.to_string();
        // Listening from the start, so that every lease this hopper stream claims can be revoked on it.
        let revocations = Box::pin(self.listen(&hello.agent_id));
        let (limits, closing) = (session::Limits::of(&self.config.dialer), self.closing.clone());
        Ok(Response::new(session::start(Engine(self.clone()), hello, campaign, limits, inbound, revocations, closing)))
    }
}

impl Context {
    /// Claims through the dialer, up to `max` leads: on the calling thread when its queue is
    /// built, since a claim then takes microseconds and a hop to the blocking pool would cost
    /// more than the claim.
    async fn next_leads(
        &self,
        campaign: String,
        agent: String,
        max: usize,
    ) -> Result<(Vec<Claimed>, Option<Dry>), Status> {
        let dialer = self.dialer.clone();
        if dialer.is_built(&campaign) {
            self.quickly(move || dialer.next_leads(&campaign, &agent, max)).await
        } else {
            blocking(move || dialer.next_leads(&campaign, &agent, max)).await
        }
    }

    /// Runs a dialer change of a lead or two on the calling thread, unless every log write
    /// waits for the disk (`fsync = "always"`) or a queue is being built (its leads' changes
    /// wait for the build): those take the blocking pool.
    async fn quickly<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, DialError> + Send + 'static,
    ) -> Result<T, Status> {
        run(self.config.store.fsync != FsyncPolicy::Always && !self.dialer.is_building(), work).await
    }

    /// A claim or the reasons there is none; none when the claimed lead is gone.
    fn next_out(&self, next: Next) -> Option<pb::NextLeadResponse> {
        use pb::next_lead_response::Result as Out;
        Some(match next {
            Next::Claimed(claimed) => pb::NextLeadResponse {
                result: Some(Out::Claim(self.claim_out(claimed, false)?)),
                next_eligible_at: None,
            },
            Next::Dry(dry) => pb::NextLeadResponse {
                result: Some(Out::NoneEligible(convert::dry_out(&dry))),
                next_eligible_at: dry.next_at_ms.map(timestamp_from_ms),
            },
        })
    }

    /// A claim as the dialer gets it; `brief` leaves out what dialling does not need. None
    /// when a full claim finds its lead erased since the claim, which revoked its lease.
    fn claim_out(&self, claimed: Claimed, brief: bool) -> Option<pb::Claim> {
        let (id, campaign) = (&claimed.lead_id, &claimed.lease.campaign);
        let (lead, score) = if brief {
            // All of it as the claim saw it: no second look at the lead or its score.
            let lead = pb::Lead {
                id: id.to_string(),
                phone: claimed.phone.to_string(),
                time_zone: claimed.time_zone.map(|tz| tz.name().to_owned()).unwrap_or_default(),
                ..Default::default()
            };
            let score = pb::LeadScore {
                lead_id: id.to_string(),
                campaign: campaign.to_string(),
                score: claimed.score,
                band: fields::band_out(Some(claimed.band)).into(),
                ..Default::default()
            };
            (Some(lead), Some(score))
        } else {
            let lead =
                self.store.read_lead(id, |lead| super::lead::convert::lead_out(&self.store, id, lead, false).lead);
            (Some(lead.flatten()?), self.scoring.current(id, campaign).ok().map(super::scoring::convert::score_out))
        };
        let mut claim = convert::claim_out(&claimed, lead, score);
        if !brief {
            let outlook = self.dialer.outlook(campaign, id, claimed.score, self.clock.now_ms());
            let callable = self.dialer.callable(campaign) + 1;
            convert::explain_claim(&mut claim, &claimed, outlook, callable);
        }
        Some(claim)
    }
}

fn outcome_out(recorded: Recorded) -> pb::ReportOutcomeResponse {
    pb::ReportOutcomeResponse { recycle_at: recorded.recycle_at_ms.map(timestamp_from_ms), attempts: recorded.attempts }
}

/// A session's floor on one engine: its dialer.
#[derive(Clone)]
struct Engine(Context);

impl session::Floor for Engine {
    async fn claim(&self, campaign: &str, agent: &str, max: usize, brief: bool) -> Result<session::Claims, Status> {
        let (claimed, dry) = self.0.next_leads(campaign.to_owned(), agent.to_owned(), max).await?;
        Ok(session::Claims {
            claims: claimed.into_iter().filter_map(|claimed| self.0.claim_out(claimed, brief)).collect(),
            dry: dry.map(|dry| session::Starved { counts: convert::dry_out(&dry), next_at_ms: dry.next_at_ms }),
        })
    }

    async fn report(&self, outcome: pb::Outcome) -> Result<pb::ReportOutcomeResponse, Status> {
        let report = convert::outcome_in("outcome", Some(&outcome), self.0.clock.now_ms())?;
        let dialer = self.0.dialer.clone();
        Ok(outcome_out(self.0.quickly(move || dialer.report(report)).await?))
    }

    async fn release(&self, lease_id: String) -> Result<(), Status> {
        let dialer = self.0.dialer.clone();
        self.0.quickly(move || dialer.release(&lease_id)).await
    }

    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut ready = Box::pin(self.0.dialer.ready());
        ready.as_mut().enable();
        ready
    }

    fn window_closed(&self, campaign: &str) {
        self.0.dialer.window_closed(campaign);
    }

    fn now_ms(&self) -> i64 {
        self.0.clock.now_ms()
    }
}

/// The revocations of an agent's leases on one engine, as a session hears them; it stops
/// listening when dropped.
pub(crate) struct Listening {
    dialer: Arc<Dialer>,
    listener: u64,
    revocations: Listener,
}

impl Context {
    /// Listens for the revocations of `agent`'s leases from now on.
    pub(crate) fn listen(&self, agent: &str) -> Listening {
        let (listener, revocations) = self.dialer.revocations().listen(agent);
        Listening { dialer: self.dialer.clone(), listener, revocations }
    }
}

impl Stream for Listening {
    type Item = Result<pb::Revoked, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.revocations.poll_recv(cx).map(|revoked| revoked.map(|revoked| Ok(convert::revoked_out(&revoked))))
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.dialer.revocations().leave(self.listener);
    }
}
