//! `DialerService`: the next best lead, outcomes, releases, and the hopper stream.

use std::pin::Pin;

use leadscore_proto::tonic::{self, Request, Response, Status, Streaming, codegen::tokio_stream::Stream};
use leadscore_proto::v1 as pb;
use pb::dialer_service_server::DialerService;

use super::convert::{self, timestamp_from_ms};
use super::status::blocking;
use super::{Context, not_yet};
use crate::dialer::{DialError, Next, Recorded};

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::DialerResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl DialerService for Context {
    type DialerSessionStream = SessionStream;

    async fn next_lead(&self, request: Request<pb::NextLeadRequest>) -> Result<Response<pb::NextLeadResponse>, Status> {
        let request = request.into_inner();
        let agent = convert::agent_id("agent_id", &request.agent_id)?;
        let dialer = self.dialer.clone();
        let campaign = request.campaign.clone();
        let next = blocking(move || dialer.next_lead(&campaign, &agent)).await?;
        Ok(Response::new(self.next_out(next)))
    }

    async fn report_outcome(
        &self,
        request: Request<pb::ReportOutcomeRequest>,
    ) -> Result<Response<pb::ReportOutcomeResponse>, Status> {
        let report = convert::outcome_in("outcome", request.into_inner().outcome.as_ref(), self.clock.now_ms())?;
        let dialer = self.dialer.clone();
        let recorded = blocking(move || dialer.report(report)).await?;
        Ok(Response::new(outcome_out(recorded)))
    }

    async fn release_lead(
        &self,
        request: Request<pb::ReleaseLeadRequest>,
    ) -> Result<Response<pb::ReleaseLeadResponse>, Status> {
        let lease_id = request.into_inner().lease_id;
        if lease_id.is_empty() {
            return Err(Status::invalid_argument("lease_id: required"));
        }
        let dialer = self.dialer.clone();
        blocking(move || dialer.release(&lease_id)).await?;
        Ok(Response::new(pb::ReleaseLeadResponse {}))
    }

    async fn dialer_session(
        &self,
        _: Request<Streaming<pb::DialerRequest>>,
    ) -> Result<Response<Self::DialerSessionStream>, Status> {
        Err(not_yet("DialerSession", "the dialer's hopper stream"))
    }
}

impl Context {
    fn next_out(&self, next: Next) -> pb::NextLeadResponse {
        use pb::next_lead_response::Result as Out;
        match next {
            Next::Claimed(claimed) => {
                let score =
                    self.scoring.current(&claimed.lead_id, &claimed.lease.campaign).ok().map(convert::score_out);
                let claim = convert::claim_out(&self.store, &claimed, score);
                pb::NextLeadResponse { result: Some(Out::Claim(claim)), next_eligible_at: None }
            }
            Next::Dry(dry) => pb::NextLeadResponse {
                result: Some(Out::NoneEligible(convert::dry_out(&dry))),
                next_eligible_at: dry.next_at_ms.map(timestamp_from_ms),
            },
        }
    }
}

fn outcome_out(recorded: Recorded) -> pb::ReportOutcomeResponse {
    pb::ReportOutcomeResponse { recycle_at: recorded.recycle_at_ms.map(timestamp_from_ms), attempts: recorded.attempts }
}

impl From<DialError> for Status {
    fn from(e: DialError) -> Self {
        match e {
            DialError::Store(e) => e.into(),
            DialError::Score(e) => e.into(),
            DialError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        }
    }
}
