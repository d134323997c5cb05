//! `DialerService`: the next best lead, outcomes, releases, and the hopper stream.

pub(crate) mod convert;

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::time::Duration;

use leadscore_proto::tonic::{self, Request, Response, Status, Streaming, codegen::tokio_stream::Stream};
use leadscore_proto::v1 as pb;
use pb::dialer_service_server::DialerService;

use super::Context;
use super::fields::{self, timestamp_from_ms};
use super::pool::{blocking, run};
use super::status::status;
use leadscore_services::dialer::revocations::{Listener, Revoked, Why};
use leadscore_services::dialer::{Claimed, DialError, Dry, Next, Recorded};
use leadscore_store::FsyncPolicy;
use pb::dialer_request::Message;
use pb::dialer_response::Message as Push;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Claims a session makes in one pass of the queue, logged in one write.
const CLAIMS_AT_ONCE: u64 = 64;

/// Messages queued for a session's dialer; credits bound the claims among them.
const SESSION_BUFFER: usize = 64;

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::DialerResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl DialerService for Context {
    type DialerSessionStream = SessionStream;

    async fn next_lead(&self, request: Request<pb::NextLeadRequest>) -> Result<Response<pb::NextLeadResponse>, Status> {
        let request = request.into_inner();
        let agent = fields::agent_id("agent_id", &request.agent_id)?;
        let next = self.next_leads(request.campaign, agent.to_string(), 1).await?;
        Ok(Response::new(self.next_out(Next::of_one(next))))
    }

    async fn report_outcome(
        &self,
        request: Request<pb::ReportOutcomeRequest>,
    ) -> Result<Response<pb::ReportOutcomeResponse>, Status> {
        let report = convert::outcome_in("outcome", request.into_inner().outcome.as_ref(), self.clock.now_ms())?;
        let dialer = self.dialer.clone();
        let recorded = self.quickly(move || dialer.report(report)).await?;
        Ok(Response::new(outcome_out(recorded)))
    }

    async fn wallboard(
        &self,
        request: Request<pb::WallboardRequest>,
    ) -> Result<Response<pb::WallboardResponse>, Status> {
        let request = request.into_inner();
        let minutes = convert::wallboard_minutes(request.minutes)?;
        let dialer = self.dialer.clone();
        let board = blocking(move || dialer.wallboard(&request.campaign, minutes)).await?;
        Ok(Response::new(convert::wallboard_out(board)))
    }

    async fn release_lead(
        &self,
        request: Request<pb::ReleaseLeadRequest>,
    ) -> Result<Response<pb::ReleaseLeadResponse>, Status> {
        let lease_id = convert::lease_id(request.into_inner().lease_id)?;
        let dialer = self.dialer.clone();
        self.quickly(move || dialer.release(&lease_id)).await?;
        Ok(Response::new(pb::ReleaseLeadResponse {}))
    }

    async fn dialer_session(
        &self,
        request: Request<Streaming<pb::DialerRequest>>,
    ) -> Result<Response<Self::DialerSessionStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(pb::DialerRequest { message: Some(Message::Hello(hello)) }) => hello,
            _ => return Err(Status::invalid_argument("message: a session must open with hello")),
        };
        let agent = fields::agent_id("hello.agent_id", &hello.agent_id)?;
        let pipeline = self.scoring.pipeline();
        let campaign = pipeline.campaign_or_error("hello.campaign", &hello.campaign).map_err(status)?;
        let campaign = pipeline.campaigns[campaign].name.to_string();
        let (tx, rx) = mpsc::channel(SESSION_BUFFER);
        // Listening from the start, so that every lease this hopper stream claims can be revoked on it.
        let (listener, revocations) = self.dialer.revocations().listen(&agent);
        let session = Session {
            cx: self.clone(),
            campaign,
            agent: agent.to_string(),
            tx,
            credits: 0,
            brief: hello.brief,
            held: HashMap::default(),
            closing: BTreeSet::new(),
            starved: false,
            listener,
        };
        tokio::spawn(session.run(inbound, revocations));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
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

    /// A claim or the reasons there is none.
    fn next_out(&self, next: Next) -> pb::NextLeadResponse {
        use pb::next_lead_response::Result as Out;
        match next {
            Next::Claimed(claimed) => pb::NextLeadResponse {
                result: Some(Out::Claim(self.claim_out(claimed, false))),
                next_eligible_at: None,
            },
            Next::Dry(dry) => pb::NextLeadResponse {
                result: Some(Out::NoneEligible(convert::dry_out(&dry))),
                next_eligible_at: dry.next_at_ms.map(timestamp_from_ms),
            },
        }
    }

    /// A claim as the dialer gets it; `brief` leaves out what dialling does not need.
    fn claim_out(&self, claimed: Claimed, brief: bool) -> pb::Claim {
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
            (lead.flatten(), self.scoring.current(id, campaign).ok().map(super::scoring::convert::score_out))
        };
        convert::claim_out(&claimed, lead, score)
    }
}

fn outcome_out(recorded: Recorded) -> pb::ReportOutcomeResponse {
    pb::ReportOutcomeResponse { recycle_at: recorded.recycle_at_ms.map(timestamp_from_ms), attempts: recorded.attempts }
}

/// One hopper stream: claims pushed as credits allow, outcomes and releases taken in.
struct Session {
    cx: Context,
    campaign: String,
    agent: String,
    tx: mpsc::Sender<Result<pb::DialerResponse, Status>>,
    credits: u64,
    /// Claims carry only what dialling needs.
    brief: bool,
    /// Leases claimed here and not yet ended, each with its calling window's close if the
    /// window ends the lease; released when the stream drops.
    held: HashMap<String, Option<i64>, foldhash::fast::RandomState>,
    /// The leases of `held` that end with their window, by that close.
    closing: BTreeSet<(i64, String)>,
    /// The dialer was told nothing is eligible, and nothing has been claimed since.
    starved: bool,
    /// This hopper stream's place among the dialer's revocation listeners.
    listener: u64,
}

/// The session ends: the dialer went away, or the server is closing.
struct Gone;

impl Session {
    async fn run(mut self, mut inbound: Streaming<pb::DialerRequest>, mut revocations: Listener) {
        let mut closing = self.cx.closing.clone();
        let dialer = self.cx.dialer.clone();
        let poll = Duration::from_millis(self.cx.config.dialer.session_poll_ms);
        loop {
            // Listen for new callable leads before looking, so none slips in between.
            let ready = dialer.ready();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let Ok(wait) = self.fill(poll, &mut revocations).await else { break };
            let Ok(next_close) = self.close_windows().await else { break };
            let tx = self.tx.clone();
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(message)) => {
                        if self.handle(message).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                },
                revoked = revocations.recv() => match revoked {
                    Some(revoked) => if self.revoke(&revoked).await.is_err() {
                        break;
                    },
                    None => break,
                },
                _ = &mut ready, if self.credits > 0 => {}
                _ = tokio::time::sleep(wait), if self.credits > 0 => {}
                // Looked at once a poll too, since the clock may not be the wall's.
                _ = tokio::time::sleep(next_close.unwrap_or(poll).min(poll)), if next_close.is_some() => {}
                // The guard `wait_for` returns is not `Send`: drop it inside.
                _ = async { drop(closing.wait_for(|closing| *closing).await) } => break,
                _ = tx.closed() => break,
            }
        }
        self.cx.dialer.revocations().leave(self.listener);
        self.release_all().await;
    }

    /// Tells the hopper that a lease it holds was revoked: its lead must not be dialled.
    async fn revoke(&mut self, revoked: &Revoked) -> Result<(), Gone> {
        let lease_id = leadscore_services::dialer::lease_id(revoked.lease, &revoked.lead_id);
        if !self.forget(&lease_id) {
            return Ok(());
        }
        self.push(Push::Revoked(convert::revoked_out(revoked))).await
    }

    /// Revokes the held leases whose calling window has closed (which ended them); returns how
    /// long until the next such close, if any lease ends with its window.
    async fn close_windows(&mut self) -> Result<Option<Duration>, Gone> {
        let now = self.cx.clock.now_ms();
        while self.closing.first().is_some_and(|(at, _)| *at <= now) {
            let (_, lease_id) = self.closing.pop_first().expect("just seen");
            self.held.remove(&lease_id);
            let Some((lease, lead_id)) = lease_id.split_once('-') else { continue };
            let revoked = Revoked {
                lease: lease.parse().unwrap_or_default(),
                lead_id: lead_id.into(),
                agent: self.agent.as_str().into(),
                campaign: self.campaign.as_str().into(),
                why: Why::WindowClosed,
                at_ms: now,
            };
            self.cx.dialer.window_closed(&self.campaign);
            self.push(Push::Revoked(convert::revoked_out(&revoked))).await?;
        }
        let next = self.closing.first().map(|(at, _)| *at);
        Ok(next.map(|at| Duration::from_millis((at - now).max(1) as u64)))
    }

    /// Forgets a lease this hopper stream held; whether it held it.
    fn forget(&mut self, lease_id: &str) -> bool {
        match self.held.remove(lease_id) {
            None => false,
            Some(close) => {
                if let Some(at) = close {
                    self.closing.remove(&(at, lease_id.to_owned()));
                }
                true
            }
        }
    }

    /// Claims while credits last; when nothing is eligible, says so once and returns how long
    /// to wait before looking again. Revocations that came meanwhile go first: none may
    /// follow a claim made after the change that caused it.
    async fn fill(&mut self, poll: Duration, revocations: &mut Listener) -> Result<Duration, Gone> {
        while self.credits > 0 {
            let max = self.credits.min(CLAIMS_AT_ONCE) as usize;
            let (claimed, dry) = match self.cx.next_leads(self.campaign.clone(), self.agent.clone(), max).await {
                Ok(next) => next,
                Err(status) => {
                    let _ = self.tx.send(Err(status)).await;
                    return Err(Gone);
                }
            };
            let mut fresh: Vec<(String, Option<Claimed>)> = claimed
                .into_iter()
                .map(|c| (leadscore_services::dialer::lease_id(c.lease.id, &c.lead_id), Some(c)))
                .collect();
            while let Ok(revoked) = revocations.try_recv() {
                let lease_id = leadscore_services::dialer::lease_id(revoked.lease, &revoked.lead_id);
                match fresh.iter_mut().find(|(id, _)| *id == lease_id) {
                    // Revoked before it was sent: never sent.
                    Some((_, claim)) => *claim = None,
                    None => self.revoke(&revoked).await?,
                }
            }
            for (lease_id, claimed) in fresh {
                let Some(claimed) = claimed else { continue };
                let ends_with_window = claimed.lease.expires_at_ms == claimed.dial_by_ms;
                let close = ends_with_window.then_some(claimed.dial_by_ms);
                if let Some(at) = close {
                    self.closing.insert((at, lease_id.clone()));
                }
                self.held.insert(lease_id, close);
                let claim = self.cx.claim_out(claimed, self.brief);
                self.credits -= 1;
                self.starved = false;
                self.push(Push::Claim(claim)).await?;
            }
            if let Some(dry) = dry {
                if !self.starved {
                    self.starved = true;
                    self.push(Push::Starved(convert::dry_out(&dry))).await?;
                }
                let now = self.cx.clock.now_ms();
                let wait = dry.next_at_ms.map_or(poll, |at| Duration::from_millis((at - now).max(1) as u64).min(poll));
                return Ok(wait);
            }
        }
        Ok(poll)
    }

    async fn handle(&mut self, message: pb::DialerRequest) -> Result<(), Gone> {
        match message.message {
            Some(Message::Credits(credits)) => {
                let max = u64::from(self.cx.config.dialer.max_session_credits);
                if self.credits + u64::from(credits) > max {
                    let rule =
                        format!("credits: at most {max} may be outstanding, got {}", self.credits + u64::from(credits));
                    return self.reject(String::new(), Status::invalid_argument(rule)).await;
                }
                self.credits += u64::from(credits);
            }
            Some(Message::Outcome(outcome)) => {
                let lease_id = outcome.lease_id.clone();
                let now = self.cx.clock.now_ms();
                let report = match convert::outcome_in("outcome", Some(&outcome), now) {
                    Ok(report) => report,
                    Err(err) => return self.reject(lease_id, err.into()).await,
                };
                let dialer = self.cx.dialer.clone();
                match self.cx.quickly(move || dialer.report(report)).await {
                    Ok(recorded) => {
                        self.forget(&lease_id);
                        self.push(Push::OutcomeAck(outcome_out(recorded))).await?;
                    }
                    Err(status) => return self.reject(lease_id, status).await,
                }
            }
            Some(Message::ReleaseLeaseId(lease_id)) => {
                let dialer = self.cx.dialer.clone();
                let id = lease_id.clone();
                match self.cx.quickly(move || dialer.release(&id)).await {
                    Ok(()) => {
                        self.forget(&lease_id);
                    }
                    Err(status) => return self.reject(lease_id, status).await,
                }
            }
            Some(Message::Hello(_)) => {
                return self
                    .reject(String::new(), Status::invalid_argument("hello: the session is already open"))
                    .await;
            }
            None => return self.reject(String::new(), Status::invalid_argument("message: required")).await,
        }
        Ok(())
    }

    async fn reject(&self, lease_id: String, status: Status) -> Result<(), Gone> {
        let rejection = pb::Rejection { lease_id, code: status.code() as i32, message: status.message().to_string() };
        self.push(Push::Rejected(rejection)).await
    }

    async fn push(&self, message: Push) -> Result<(), Gone> {
        self.tx.send(Ok(pb::DialerResponse { message: Some(message) })).await.map_err(|_| Gone)
    }

    /// Hands back every lease the dialer did not report: its calls will not happen.
    async fn release_all(self) {
        let dialer = self.cx.dialer.clone();
        let held: Vec<String> = self.held.into_keys().collect();
        let released = held.len();
        let _ = tokio::task::spawn_blocking(move || {
            for lease in held {
                // A lease reported by a unary call meanwhile is already ended.
                let _ = dialer.release(&lease);
            }
        })
        .await;
        tracing::debug!(agent = %self.agent, released, "dialer session ended");
    }
}
