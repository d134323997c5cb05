//! A hopper: the dialer sends credits, outcomes and releases; the session pushes claims as
//! credits allow, and revokes a held lease as soon as its lead must not be called. Closing the
//! stream releases its leases. The same session serves one engine and a cluster node's shards:
//! it claims from and reports to a `Floor`, and hears of revocations on a stream.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};
use leadscore_proto::tonic::{Status, Streaming, codegen::tokio_stream::Stream};
use leadscore_proto::v1 as pb;
use pb::dialer_request::Message;
use pb::dialer_response::Message as Push;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic_types::StatusExt as _;

use crate::api::fields;
use crate::api::status::invalid;

/// Messages queued for a session's dialer; credits bound the claims among them.
const SESSION_BUFFER: usize = 64;

/// Claims a session asks for in one pass, logged in one write on one engine.
pub(crate) const CLAIMS_AT_ONCE: u64 = 64;

pub(crate) type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::DialerResponse, Status>> + Send + 'static>>;

/// The revocations of the session's agent's leases, as they are made. An error ends the
/// session with it (a cluster node's shard moved: the dialer opens a new one).
pub(crate) type Revocations = Pin<Box<dyn Stream<Item = Result<pb::Revoked, Status>> + Send + 'static>>;

/// One pass of claims: those made, and, if nothing more is eligible, why.
pub(crate) struct Claims {
    pub claims: Vec<pb::Claim>,
    pub dry: Option<Starved>,
}

pub(crate) struct Starved {
    pub counts: pb::IneligibleCounts,
    /// When something is next expected to become eligible.
    pub next_at_ms: Option<i64>,
}

/// What a session claims from and reports to.
pub(crate) trait Floor: Clone + Send + Sync + 'static {
    /// Up to `max` claims for the agent; `brief` claims carry only what dialling needs.
    fn claim(
        &self,
        campaign: &str,
        agent: &str,
        max: usize,
        brief: bool,
    ) -> impl Future<Output = Result<Claims, Status>> + Send;
    fn report(&self, outcome: pb::Outcome) -> impl Future<Output = Result<pb::ReportOutcomeResponse, Status>> + Send;
    fn release(&self, lease_id: String) -> impl Future<Output = Result<(), Status>> + Send;
    /// Resolves when a lead may have become callable, listening from the call on; the session
    /// looks again at least once a poll anyway.
    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Counts a held lease that its calling window's close ended.
    fn window_closed(&self, campaign: &str);
    fn now_ms(&self) -> i64;
}

/// How a session opens: with a hello naming the campaign, the agent and whether claims are brief.
pub(crate) async fn hello(inbound: &mut Streaming<pb::DialerRequest>) -> Result<pb::DialerHello, Status> {
    match inbound.message().await? {
        Some(pb::DialerRequest { message: Some(Message::Hello(hello)) }) => {
            fields::agent_id("hello.agent_id", &hello.agent_id)?;
            Ok(hello)
        }
        _ => Err(invalid("message", "a session must open with hello", "INVALID_FIELD")),
    }
}

/// The limits a session keeps to.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    /// How often a session with credits looks for callable leads when told of none.
    pub poll: Duration,
    pub max_credits: u64,
}

impl Limits {
    pub(crate) fn of(dialer: &leadscore_config::DialerConfig) -> Self {
        Self { poll: Duration::from_millis(dialer.session_poll_ms), max_credits: u64::from(dialer.max_session_credits) }
    }
}

/// Starts a session for `campaign` (a name the floor knows) and the hello's agent; the
/// revocations must be heard from before the first claim.
pub(crate) fn start<F: Floor>(
    floor: F,
    hello: pb::DialerHello,
    campaign: String,
    limits: Limits,
    inbound: Streaming<pb::DialerRequest>,
    revocations: Revocations,
    closing: watch::Receiver<bool>,
) -> SessionStream {
    let (tx, rx) = mpsc::channel(SESSION_BUFFER);
    let session = Session {
        floor,
        campaign,
        agent: hello.agent_id,
        brief: hello.brief,
        limits,
        tx,
        credits: 0,
        held: HashMap::default(),
        closing: BTreeSet::new(),
        starved: false,
    };
    tokio::spawn(session.run(inbound, revocations, closing));
    Box::pin(ReceiverStream::new(rx))
}

struct Session<F> {
    floor: F,
    campaign: String,
    agent: String,
    /// Claims carry only what dialling needs.
    brief: bool,
    limits: Limits,
    tx: mpsc::Sender<Result<pb::DialerResponse, Status>>,
    credits: u64,
    /// Leases claimed here and not yet ended, each with its calling window's close if the
    /// window ends the lease; released when the stream drops.
    held: HashMap<String, Option<i64>, foldhash::fast::RandomState>,
    /// The leases of `held` that end with their window, by that close.
    closing: BTreeSet<(i64, String)>,
    /// The dialer was told nothing is eligible, and nothing has been claimed since.
    starved: bool,
}

/// The session ends: the dialer went away, the server is closing, or the floor failed.
struct Gone;

impl<F: Floor> Session<F> {
    async fn run(
        mut self,
        mut inbound: Streaming<pb::DialerRequest>,
        mut revocations: Revocations,
        mut closing: watch::Receiver<bool>,
    ) {
        let floor = self.floor.clone();
        let poll = self.limits.poll;
        loop {
            // Listen for new callable leads before looking, so none slips in between.
            let ready = floor.ready();
            let Ok(wait) = self.fill(&mut revocations).await else { break };
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
                revoked = revocations.next() => if self.revoked(revoked).await.is_err() {
                    break;
                },
                _ = ready, if self.credits > 0 => {}
                _ = tokio::time::sleep(wait), if self.credits > 0 => {}
                // Looked at once a poll too, since the clock may not be the wall's.
                _ = tokio::time::sleep(next_close.unwrap_or(poll).min(poll)), if next_close.is_some() => {}
                // The guard `wait_for` returns is not `Send`: drop it inside.
                _ = async { drop(closing.wait_for(|closing| *closing).await) } => break,
                _ = tx.closed() => break,
            }
        }
        self.release_all().await;
    }

    /// Tells the hopper of a revocation of a lease it holds; a failed stream of them ends the
    /// session with its status.
    async fn revoked(&mut self, revoked: Option<Result<pb::Revoked, Status>>) -> Result<(), Gone> {
        match revoked {
            Some(Ok(revoked)) => self.revoke(revoked).await,
            Some(Err(status)) => {
                let _ = self.tx.send(Err(status)).await;
                Err(Gone)
            }
            None => Err(Gone),
        }
    }

    /// Tells the hopper that a lease it holds was revoked: its lead must not be dialled.
    async fn revoke(&mut self, revoked: pb::Revoked) -> Result<(), Gone> {
        if !self.forget(&revoked.lease_id) {
            return Ok(());
        }
        self.push(Push::Revoked(revoked)).await
    }

    /// Revokes the held leases whose calling window has closed (which ended them); returns how
    /// long until the next such close, if any lease ends with its window.
    async fn close_windows(&mut self) -> Result<Option<Duration>, Gone> {
        let now = self.floor.now_ms();
        while self.closing.first().is_some_and(|(at, _)| *at <= now) {
            let (_, lease_id) = self.closing.pop_first().expect("just seen");
            self.held.remove(&lease_id);
            let lead_id = lease_id.split_once('-').map(|(_, lead)| lead.to_owned()).unwrap_or_default();
            let revoked = pb::Revoked {
                lease_id,
                lead_id,
                reason: pb::RevokeReason::WindowClosed.into(),
                at: Some(fields::timestamp_from_ms(now)),
            };
            self.floor.window_closed(&self.campaign);
            self.push(Push::Revoked(revoked)).await?;
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
    async fn fill(&mut self, revocations: &mut Revocations) -> Result<Duration, Gone> {
        let poll = self.limits.poll;
        while self.credits > 0 {
            let max = self.credits.min(CLAIMS_AT_ONCE) as usize;
            let Claims { claims, dry } = match self.floor.claim(&self.campaign, &self.agent, max, self.brief).await {
                Ok(claims) => claims,
                Err(status) => {
                    let _ = self.tx.send(Err(status)).await;
                    return Err(Gone);
                }
            };
            let mut fresh: Vec<Option<pb::Claim>> = claims.into_iter().map(Some).collect();
            while let Some(revoked) = revocations.next().now_or_never() {
                let Some(Ok(revoked)) = revoked else { return self.revoked(revoked).await.map(|()| poll) };
                match fresh.iter_mut().find(|claim| lease_of(claim.as_ref()) == Some(revoked.lease_id.as_str())) {
                    // Revoked before it was sent: never sent.
                    Some(claim) => *claim = None,
                    None => self.revoke(revoked).await?,
                }
            }
            for claim in fresh.into_iter().flatten() {
                let Some(lease) = &claim.lease else { continue };
                let dial_by = claim.dial_by.as_ref().map(fields::timestamp_to_ms);
                let ends_with_window =
                    dial_by.is_some() && lease.expires_at.as_ref().map(fields::timestamp_to_ms) == dial_by;
                let close = dial_by.filter(|_| ends_with_window);
                if let Some(at) = close {
                    self.closing.insert((at, lease.lease_id.clone()));
                }
                self.held.insert(lease.lease_id.clone(), close);
                self.credits -= 1;
                self.starved = false;
                self.push(Push::Claim(claim)).await?;
            }
            if let Some(dry) = dry {
                if !self.starved {
                    self.starved = true;
                    self.push(Push::Starved(dry.counts)).await?;
                }
                let now = self.floor.now_ms();
                let wait = dry.next_at_ms.map_or(poll, |at| Duration::from_millis((at - now).max(1) as u64).min(poll));
                return Ok(wait);
            }
        }
        Ok(poll)
    }

    async fn handle(&mut self, message: pb::DialerRequest) -> Result<(), Gone> {
        match message.message {
            Some(Message::Credits(credits)) => {
                let max = self.limits.max_credits;
                if self.credits + u64::from(credits) > max {
                    let rule = format!("at most {max} may be outstanding, got {}", self.credits + u64::from(credits));
                    return self.reject(String::new(), invalid("credits", &rule, "INVALID_FIELD")).await;
                }
                self.credits += u64::from(credits);
            }
            Some(Message::Outcome(outcome)) => {
                let lease_id = outcome.lease_id.clone();
                match self.floor.report(outcome).await {
                    Ok(recorded) => {
                        self.forget(&lease_id);
                        self.push(Push::OutcomeAck(recorded)).await?;
                    }
                    Err(status) => return self.reject(lease_id, status).await,
                }
            }
            Some(Message::ReleaseLeaseId(lease_id)) => match self.floor.release(lease_id.clone()).await {
                Ok(()) => {
                    self.forget(&lease_id);
                }
                Err(status) => return self.reject(lease_id, status).await,
            },
            Some(Message::Hello(_)) => {
                return self
                    .reject(String::new(), invalid("hello", "the session is already open", "INVALID_FIELD"))
                    .await;
            }
            None => return self.reject(String::new(), invalid("message", "required", "INVALID_FIELD")).await,
        }
        Ok(())
    }

    async fn reject(&self, lease_id: String, status: Status) -> Result<(), Gone> {
        let reason = status.get_details_error_info().map(|info| info.reason).unwrap_or_default();
        let rejection =
            pb::Rejection { lease_id, code: status.code() as i32, message: status.message().to_string(), reason };
        self.push(Push::Rejected(rejection)).await
    }

    async fn push(&self, message: Push) -> Result<(), Gone> {
        self.tx.send(Ok(pb::DialerResponse { message: Some(message) })).await.map_err(|_| Gone)
    }

    /// Hands back every lease the dialer did not report: its calls will not happen.
    async fn release_all(self) {
        let released = self.held.len();
        for lease in self.held.into_keys() {
            // A lease reported by a unary call meanwhile is already ended.
            let _ = self.floor.release(lease).await;
        }
        tracing::debug!(agent = %self.agent, released, "dialer session ended");
    }
}

fn lease_of(claim: Option<&pb::Claim>) -> Option<&str> {
    claim?.lease.as_ref().map(|lease| lease.lease_id.as_str())
}
