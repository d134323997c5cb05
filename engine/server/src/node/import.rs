//! An import through a node: each shard's rows go down a stream of their own to the shard's
//! engine, here or on its owner, each row with the caller's line number, so that rejections
//! read as on one node.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use futures_util::StreamExt as _;
use leadscore_proto::tonic::{Request, Response, Status, Streaming};
use leadscore_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use super::front::{Front, Part, SHARDS, forwarded, part_of, unreachable};
use crate::api::fields::batch_len;
use crate::api::lead;
use crate::ops::auth::{self, Role};
use leadscore_cluster::ShardId;

/// Chunks of an import's part queued for its shard.
const IMPORT_BUFFER: usize = 4;

/// One shard's part of an import: where its chunks go, and its answer.
type ImportPart = (mpsc::Sender<pb::ImportLeadsRequest>, JoinHandle<Result<pb::ImportLeadsResponse, Status>>);

impl Front {
    /// Each shard's leads go down a stream of their own to the shard's engine, here or on its
    /// owner, each with its line number, so that rejections name the caller's lines.
    pub(super) async fn import(
        &self,
        request: Request<Streaming<pb::ImportLeadsRequest>>,
    ) -> Result<pb::ImportLeadsResponse, Status> {
        let caller = part_of(&request, ());
        if request.metadata().contains_key(SHARDS) {
            let &[shard] = self.scope(&request)?.as_slice() else {
                return Err(Status::invalid_argument(format!("{SHARDS}: an import's part is for one shard")));
            };
            let (may_object, actor) = (auth::allows(caller.extensions().get(), Role::Privacy), auth::actor(&caller));
            return self.here(shard)?.import(may_object, actor, request.into_inner()).await;
        }
        let mut parts = BTreeMap::new();
        let (mut position, mut merge) = (0u64, None);
        let mut stream = request.into_inner();
        'chunks: while let Some(chunk) = stream.message().await? {
            batch_len("leads", chunk.leads.len(), self.0.max_batch)?;
            lead::convert::import_chunk(&chunk)?;
            if position == 0 {
                merge = chunk.merge.clone();
            }
            let mut split: BTreeMap<ShardId, pb::ImportLeadsRequest> = BTreeMap::new();
            for (i, lead) in chunk.leads.into_iter().enumerate() {
                position += 1;
                let part = split.entry(self.shard(&lead.id)).or_default();
                part.line_numbers.push(chunk.line_numbers.get(i).copied().unwrap_or(position));
                part.blanks.push(chunk.blanks.get(i).cloned().unwrap_or_default());
                part.leads.push(lead);
            }
            for (shard, mut part) in split {
                let (sender, _) = match parts.entry(shard) {
                    Entry::Occupied(open) => open.into_mut(),
                    Entry::Vacant(new) => {
                        part.merge = merge.clone();
                        new.insert(self.import_part(shard, &caller)?)
                    }
                };
                if sender.send(part).await.is_err() {
                    break 'chunks; // that part ended early: its answer says why
                }
            }
        }
        let mut total = pb::ImportLeadsResponse::default();
        for (sender, part) in parts.into_values() {
            drop(sender);
            let answer = part.await.map_err(|e| Status::internal(format!("an import's part: {e}")))??;
            total.accepted += answer.accepted;
            total.rejected += answer.rejected;
            total.rejections.extend(answer.rejections);
        }
        total.rejections.sort_by_key(|r| r.line_number);
        total.rejections.truncate(lead::MAX_REPORTED_REJECTIONS);
        Ok(total)
    }

    /// A stream for one shard's part of an import, to its engine here or to its owner.
    fn import_part(&self, shard: ShardId, caller: &Request<()>) -> Result<ImportPart, Status> {
        let (sender, chunks) = mpsc::channel(IMPORT_BUFFER);
        let chunks = ReceiverStream::new(chunks);
        let task = match self.place(shard, true)? {
            Part::Here(context) => {
                let (may_object, actor) = (auth::allows(caller.extensions().get(), Role::Privacy), auth::actor(caller));
                tokio::spawn(async move { context.import(may_object, actor, chunks.map(Ok)).await })
            }
            Part::There { channel, address } => {
                let request = forwarded(part_of(caller, chunks), &[shard]);
                let mut client = self.lead_client(channel);
                tokio::spawn(async move {
                    client.import_leads(request).await.map(Response::into_inner).map_err(|e| unreachable(e, &address))
                })
            }
        };
        Ok((sender, task))
    }
}
