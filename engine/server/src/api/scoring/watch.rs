//! `WatchTopLeads`: a ranked list kept current, each watcher a task that takes the ranking's
//! changes into its list (`scoring::watch`) and sends the diffs; a snapshot again whenever it
//! fell behind.

use std::sync::Arc;

use leadscore_proto::tonic::Status;
use leadscore_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc, watch};

use super::convert::ranked_out;
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
    explain: bool,
}

impl Watcher {
    fn keep(&self, id: &LeadId, _score: f64) -> bool {
        !self.exclude_finished || !self.dialer.finished(&self.campaign, id)
    }

    fn snapshot(&self, list: &TopList, mut leads: Vec<LeadScore>) -> pb::WatchTopLeadsResponse {
        self.explain(&mut leads);
        let ranked = leads.into_iter().enumerate().map(|(i, score)| self.ranked(i + 1, score)).collect();
        change(list.seq, pb::watch_top_leads_response::Change::Snapshot(pb::TopLeadsSnapshot { leads: ranked }))
    }

    /// A listed lead as the client sees it: with its dialling state as of now.
    fn ranked(&self, rank: usize, score: LeadScore) -> pb::RankedLead {
        let standing = self.dialer.standing(&self.campaign, &score.lead_id);
        pb::RankedLead { rank: rank as u32, ..ranked_out(self.dialer.listed(&self.campaign, score, standing)) }
    }

    /// The factors of listed scores, if asked; a scorer that cannot explain now leaves them out.
    fn explain(&self, scores: &mut [LeadScore]) {
        if self.explain
            && let Err(err) = self.scoring.explain_listed(scores)
        {
            tracing::warn!(error = %err, "a watched list's leads could not be explained");
        }
    }

    fn diff_out(&self, seq: u64, diff: Diff) -> pb::WatchTopLeadsResponse {
        use pb::watch_top_leads_response::Change;
        let listed = |rank: usize, mut score: LeadScore| {
            self.explain(std::slice::from_mut(&mut score));
            self.ranked(rank, score)
        };
        change(
            seq,
            match diff {
                Diff::Entered { rank, score } => Change::Entered(listed(rank, score)),
                Diff::Left(id) => Change::Left(id.to_string()),
                Diff::Moved { rank, score } => Change::Moved(listed(rank, score)),
            },
        )
    }
}

fn change(seq: u64, change: pb::watch_top_leads_response::Change) -> pb::WatchTopLeadsResponse {
    pb::WatchTopLeadsResponse { seq, change: Some(change) }
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
        explain: query.explain,
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
    // Changes below the list's floor are not sent to it, so it also looks at the ranking's
    // progress now and then.
    let every = watcher.scoring.pipeline().config.scoring.watch_progress_ms;
    let mut progress = tokio::time::interval(std::time::Duration::from_millis(every));
    loop {
        let received = tokio::select! {
            received = changes.recv() => Some(received),
            _ = progress.tick() => None,
            _ = closing.wait_for(|closing| *closing) => return,
        };
        let messages = match received {
            None => Vec::new(),
            Some(received) => match received {
                Ok(change) => {
                    let diffs = watcher.scoring.apply_change(&mut list, &change, &|id, score| watcher.keep(id, score));
                    diffs.into_iter().map(|diff| Ok(watcher.diff_out(list.seq, diff))).collect()
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
            },
        };
        for message in messages {
            let failed = message.is_err();
            if tx.send(message).await.is_err() || failed {
                return;
            }
        }
        let seq = watcher.scoring.caught_up(&mut list, || !changes.is_empty());
        if changes.is_empty() && seq > caught_up {
            caught_up = seq;
            let message = change(seq, pb::watch_top_leads_response::Change::CaughtUp(true));
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
        }
    }
}
