//! A client's copy of a `WatchTopLeads` list, rebuilt from the messages as the proto says, and
//! what it is checked against: `TopLeads` and the sequence number it is current to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadscore_proto::tonic::Status;
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::v1 as pb;
use pb::scoring_service_client::ScoringServiceClient;
use pb::watch_top_leads_response::Change;
use tokio_stream::StreamExt;

/// The list, by lead id and score, and the last sequence number it is known complete to (a
/// snapshot's, or a caught-up one's).
#[derive(Debug, Default)]
pub struct Copy {
    pub list: Vec<(String, f64)>,
    pub settled: u64,
    pub snapshots: usize,
    /// Why the watch ended, if it did.
    pub ended: Option<Status>,
}

impl Copy {
    pub fn apply(&mut self, message: pb::WatchTopLeadsResponse) {
        let entry = |ranked: &pb::RankedLead| {
            let score = ranked.score.as_ref().unwrap();
            (score.lead_id.clone(), score.score)
        };
        match message.change.expect("every message changes something") {
            Change::Snapshot(snapshot) => {
                self.list = snapshot.leads.iter().map(entry).collect();
                self.settled = message.seq;
                self.snapshots += 1;
            }
            Change::Entered(ranked) => {
                assert!(!self.list.iter().any(|(id, _)| *id == entry(&ranked).0), "{ranked:?} entered twice");
                self.list.insert(ranked.rank as usize - 1, entry(&ranked));
            }
            Change::Left(id) => {
                let at = self.list.iter().position(|(listed, _)| *listed == id).expect("a listed lead leaves");
                self.list.remove(at);
            }
            Change::Moved(ranked) => {
                let (id, score) = entry(&ranked);
                let at = self.list.iter().position(|(listed, _)| *listed == id).expect("a listed lead moves");
                self.list.remove(at);
                self.list.insert(ranked.rank as usize - 1, (id, score));
            }
            Change::CaughtUp(_) => self.settled = message.seq,
        }
    }
}

/// Starts watching; the copy is kept by a task as messages arrive, until the watch ends.
pub async fn watch(scoring: &mut ScoringServiceClient<Channel>, request: pb::TopLeadsRequest) -> Arc<Mutex<Copy>> {
    let mut stream = scoring.watch_top_leads(request).await.unwrap().into_inner();
    let copy = Arc::new(Mutex::new(Copy::default()));
    let kept = copy.clone();
    tokio::spawn(async move {
        while let Some(message) = stream.next().await {
            match message {
                Ok(message) => kept.lock().unwrap().apply(message),
                Err(status) => {
                    kept.lock().unwrap().ended = Some(status);
                    return;
                }
            }
        }
    });
    copy
}

/// `TopLeads` for the request, and the sequence number it is current to.
pub async fn truth(
    scoring: &mut ScoringServiceClient<Channel>,
    request: &pb::TopLeadsRequest,
) -> (Vec<(String, f64)>, u64) {
    let answer = scoring.top_leads(request.clone()).await.unwrap();
    let seq = answer.metadata().get("leadscore-ranking-seq").expect("a ranking seq");
    let seq = seq.to_str().unwrap().parse().unwrap();
    let list = answer
        .into_inner()
        .map(|r| {
            let score = r.unwrap().score.unwrap();
            (score.lead_id, score.score)
        })
        .collect()
        .await;
    (list, seq)
}

/// Waits until the copy is complete up to `seq`, then gives its list and the seq it is at.
pub async fn settled(copy: &Mutex<Copy>, seq: u64) -> (Vec<(String, f64)>, u64) {
    for _ in 0..1000 {
        {
            let copy = copy.lock().unwrap();
            if copy.settled >= seq {
                return (copy.list.clone(), copy.settled);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the watch never caught up to {seq}: {:?}", copy.lock().unwrap());
}
