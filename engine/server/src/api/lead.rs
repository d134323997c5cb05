//! `LeadService`: storing, reading and erasing leads and their events.

pub(crate) mod convert;

use std::collections::HashMap;
use std::sync::Arc;

use compact_str::CompactString;

use leadscore_proto::tonic::{self, Request, Response, Status, Streaming};
use leadscore_proto::v1 as pb;

use super::answer;
use pb::lead_service_server::LeadService;
use tokio_stream::{Stream, StreamExt as _};

use super::Context;
use super::fields::{self, batch_len};
use super::pool::{blocking, run};
use super::status::status;
use crate::ops::auth::{self, Role};
use leadscore_services::scoring::Trigger;
use leadscore_store::StoreError;
use leadscore_store::lead::LeadId;
use leadscore_store::merge::Merge;

/// Up to this many events, a `RecordEvents` runs on the calling thread (`pool::run`).
const INLINE_EVENTS: usize = 16;

/// Rejections an import reports in detail (some 10 MB at most); the rest are only counted.
pub const MAX_REPORTED_REJECTIONS: usize = 100_000;

#[tonic::async_trait]
impl LeadService for Context {
    async fn upsert_leads(
        &self,
        request: Request<pb::UpsertLeadsRequest>,
    ) -> Result<Response<pb::UpsertLeadsResponse>, Status> {
        let (may_object, actor) = (auth::allows(request.extensions().get(), Role::Privacy), auth::actor(&request));
        let leads = convert::upsert_batch(&request.into_inner().leads, self.config.server.max_batch)?;
        let ids: Vec<LeadId> = leads.iter().map(|lead| lead.id.clone()).collect();
        let cx = self.clone();
        let summary = blocking(move || {
            let summary = cx.store.upsert_leads_as(leads, may_object, &actor)?;
            cx.dialer.revoke_unfit(&ids);
            cx.rescore(&ids, Trigger::Upsert);
            Ok::<_, StoreError>(summary)
        })
        .await?;
        Ok(answer(pb::UpsertLeadsResponse { created: summary.created, updated: summary.updated }))
    }

    async fn get_lead(&self, request: Request<pb::GetLeadRequest>) -> Result<Response<pb::GetLeadResponse>, Status> {
        let request = request.into_inner();
        let id = fields::id("id", &request.id)?;
        self.store
            .read_lead(&id, |lead| convert::lead_out(&self.store, &id, lead, request.include_events))
            .map(Response::new)
            .ok_or_else(|| status(StoreError::NotFound(id.clone())))
    }

    async fn record_events(
        &self,
        request: Request<pb::RecordEventsRequest>,
    ) -> Result<Response<pb::RecordEventsResponse>, Status> {
        let events = request.into_inner().events;
        batch_len("events", events.len(), self.config.server.max_batch)?;
        let now = self.clock.now_ms();
        let events = events
            .iter()
            .enumerate()
            .map(|(i, e)| convert::event_input(&fields::element("events", i), e, None, now))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids: Vec<LeadId> = events.iter().map(|event| event.lead_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        // A few events are logged and rescored on this thread: shorter than a hop to the pool.
        // The rescore runs while the sync does; the answer waits for the sync alone.
        let cx = self.clone();
        let (summary, logged) = run(events.len() <= INLINE_EVENTS, move || {
            let (summary, logged) = cx.store.log_events(events)?;
            cx.rescore(&ids, Trigger::Events);
            Ok::<_, StoreError>((summary, logged))
        })
        .await?;
        self.store.acknowledged(logged).await.map_err(status)?;
        Ok(answer(pb::RecordEventsResponse { recorded: summary.recorded, duplicates: summary.duplicates }))
    }

    async fn import_leads(
        &self,
        request: Request<Streaming<pb::ImportLeadsRequest>>,
    ) -> Result<Response<pb::ImportLeadsResponse>, Status> {
        let (may_object, actor) = (auth::allows(request.extensions().get(), Role::Privacy), auth::actor(&request));
        self.import(may_object, actor, request.into_inner()).await.map(Response::new)
    }

    async fn erase_lead(
        &self,
        request: Request<pb::EraseLeadRequest>,
    ) -> Result<Response<pb::EraseLeadResponse>, Status> {
        let actor = auth::actor(&request);
        let id = fields::id("id", &request.into_inner().id)?;
        let cx = self.clone();
        let events_erased = blocking(move || {
            let erased = cx.store.erase_lead(&id, &actor)?;
            cx.dialer.revoke_unfit(std::slice::from_ref(&id));
            cx.scoring.forget(&id);
            cx.dialer.requeue(std::slice::from_ref(&id));
            cx.dialer.calls_erased();
            Ok::<_, StoreError>(erased)
        })
        .await?;
        self.erased.notify_one();
        Ok(answer(pb::EraseLeadResponse { events_erased }))
    }
}

impl Context {
    /// Imports a stream of chunks: each lead checked on its own (a bad one is reported by its
    /// line and the rest go on), each chunk stored in one write.
    pub(crate) async fn import(
        &self,
        may_object: bool,
        actor: String,
        mut stream: impl Stream<Item = Result<pb::ImportLeadsRequest, Status>> + Unpin,
    ) -> Result<pb::ImportLeadsResponse, Status> {
        let mut response = pb::ImportLeadsResponse::default();
        let mut position = 0u64;
        let mut merge: Option<Arc<Merge>> = None;
        let reject = |response: &mut pb::ImportLeadsResponse, line_number, lead_id: &str, reason: String| {
            response.rejected += 1;
            if response.rejections.len() < MAX_REPORTED_REJECTIONS {
                response.rejections.push(pb::ImportRejection { line_number, lead_id: lead_id.to_owned(), reason });
            }
        };
        let mut first = true;
        while let Some(chunk) = stream.next().await.transpose()? {
            batch_len("leads", chunk.leads.len(), self.config.server.max_batch)?;
            convert::import_chunk(&chunk)?;
            if std::mem::take(&mut first) {
                merge = chunk.merge.as_ref().map(convert::merge_in).transpose()?.map(Arc::new);
            }
            let mut valid = Vec::with_capacity(chunk.leads.len());
            // A lead repeated within a chunk: the last one wins, as across chunks.
            let mut last_index: HashMap<&str, usize> = HashMap::new();
            for (i, lead) in chunk.leads.iter().enumerate() {
                position += 1;
                let line = chunk.line_numbers.get(i).copied().unwrap_or(position);
                match convert::lead_input("lead", lead) {
                    Ok(input) => {
                        if let Some(previous) = last_index.insert(&lead.id, valid.len()) {
                            valid[previous] = None;
                            response.accepted += 1;
                        }
                        let blank = chunk.blanks.get(i).map(|b| b.fields.iter().map(|f| f.into()).collect());
                        valid.push(Some((input, line, blank.unwrap_or_default())));
                    }
                    Err(e) => reject(&mut response, line, &lead.id, format!("{}: {}", e.field, e.rule)),
                }
            }
            let ((inputs, lines), blanks): ((Vec<_>, Vec<_>), Vec<Vec<CompactString>>) =
                valid.into_iter().flatten().map(|(input, line, blank)| ((input, line), blank)).unzip();
            let ids: Vec<LeadId> = inputs.iter().map(|i| i.id.clone()).collect();
            let count = inputs.len() as u64;
            let (cx, stored, actor, merge) = (self.clone(), ids.clone(), actor.clone(), merge.clone());
            let refused = blocking(move || {
                let refused = cx.store.import_leads(inputs, merge.as_deref(), &blanks, may_object, &actor)?;
                cx.dialer.revoke_unfit(&stored);
                cx.rescore(&stored, Trigger::Upsert);
                Ok::<_, StoreError>(refused)
            })
            .await?;
            response.accepted += count - refused.len() as u64;
            for (index, err) in refused {
                reject(&mut response, lines[index], &ids[index], err.to_string());
            }
        }
        Ok(response)
    }
}
