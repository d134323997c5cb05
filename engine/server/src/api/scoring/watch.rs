//! `WatchTopLeads`: a ranked list kept current, each watcher a task that takes the ranking's
//! changes into its list (`scoring::watch`) and sends the diffs; a snapshot again whenever it
//! fell behind.

use std::sync::Arc;

use leadscore_proto::tonic::Status;
use leadscore_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc, watch};

use super::convert::score_out;
use crate::api::Context;
use crate::api::status::status;
use leadscore_services::dialer::Dialer;
use leadscore_services::scoring::watch::{Diff, TopList};
use leadscore_services::scoring::{LeadScore, Scoring, TopQuery};
use leadscore_store::lead::LeadId;

type Message = Result<pb::WatchTopLeadsResponse, Status>;

/// The largest list watched.
pub const MAX_WATCHED: usize = 1000;

/// What a watcher needs beyond its list: the engine, and whether finished leads are left out.
struct Watcher {
    scoring: Arc<Scoring>,
    dialer: Arc<Dialer>,
    campaign: String,
    exclude_finished: bool,
}

impl Watcher {
    fn keep(&self, id: &LeadId, _score: f64) -> bool {
        !self.exclude_finished || !self.dialer.finished(&self.campaign, id)
    }

    fn snapshot(&self, list: &TopList, leads: Vec<LeadScore>) -> pb::WatchTopLeadsResponse {
        let ranked = leads.into_iter().enumerate().map(|(i, score)| ranked(i + 1, score)).collect();
        change(list.seq, pb::watch_top_leads_response::Change::Snapshot(pb::TopLeadsSnapshot { leads: ranked }))
    }
}

fn ranked(rank: usize, score: LeadScore) -> pb::RankedLead {
    pb::RankedLead { rank: rank as u32, score: Some(score_out(score)), dialing: None }
}

fn change(seq: u64, change: pb::watch_top_leads_response::Change) -> pb::WatchTopLeadsResponse {
    pb::WatchTopLeadsResponse { seq, change: Some(change) }
}

fn diff_out(seq: u64, diff: Diff) -> pb::WatchTopLeadsResponse {
    use pb::watch_top_leads_response::Change;
    change(
        seq,
        match diff {
            Diff::Entered { rank, score } => Change::Entered(ranked(rank, score)),
            Diff::Left(id) => Change::Left(id.to_string()),
            Diff::Moved { rank, score } => Change::Moved(ranked(rank, score)),
        },
    )
}

/// Starts a watcher: its snapshot is read now, on the caller's time, so a bad request or an
/// unknown campaign is refused before the stream opens.
pub(super) async fn start(
    context: &Context,
    query: TopQuery,
    closing: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<Message>, Status> {
    let watcher = Arc::new(Watcher {
        scoring: context.scoring.clone(),
        dialer: context.dialer.clone(),
        campaign: query.campaign.clone(),
        exclude_finished: query.exclude_finished,
    });
    let reading = watcher.clone();
    let (list, snapshot, changes) =
        crate::api::pool::blocking(move || reading.scoring.watch_top(query, &|id, score| reading.keep(id, score)))
            .await
            .map_err(status)?;
    let (tx, rx) = mpsc::channel(super::STREAM_BUFFER);
    let first = watcher.snapshot(&list, snapshot);
    tokio::spawn(run(watcher, list, changes, first, tx, closing));
    Ok(rx)
}

/// Sends the snapshot, then each change's diffs, and says when it has caught up.
async fn run(
    watcher: Arc<Watcher>,
    mut list: TopList,
    mut changes: broadcast::Receiver<leadscore_services::scoring::index::RankChange>,
    first: pb::WatchTopLeadsResponse,
    tx: mpsc::Sender<Message>,
    mut closing: watch::Receiver<bool>,
) {
    if tx.send(Ok(first)).await.is_err() {
        return;
    }
    // The change last said caught up to: after diffs too, so a client knows no more follow.
    let mut caught_up = list.seq;
    loop {
        let received = tokio::select! {
            received = changes.recv() => received,
            _ = closing.wait_for(|closing| *closing) => return,
        };
        let messages = match received {
            Ok(change) => {
                let diffs = watcher.scoring.apply_change(&mut list, &change, &|id, score| watcher.keep(id, score));
                diffs.into_iter().map(|diff| Ok(diff_out(list.seq, diff))).collect()
            }
            // Fell behind: the list is read afresh rather than left wrong.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                match watcher.scoring.refresh(&mut list, &|id, score| watcher.keep(id, score)) {
                    Ok(leads) => vec![Ok(watcher.snapshot(&list, leads))],
                    // The campaign is gone.
                    Err(err) => vec![Err(status(err))],
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        for message in messages {
            let failed = message.is_err();
            if tx.send(message).await.is_err() || failed {
                return;
            }
        }
        if changes.is_empty() && list.seq > caught_up {
            caught_up = list.seq;
            let message = change(list.seq, pb::watch_top_leads_response::Change::CaughtUp(true));
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
        }
    }
}
