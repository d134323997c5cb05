//! `account.score` on a cluster. An account's leads may be on any shard, yet a campaign filter
//! or a routing rule that reads `account.score` means the whole account. So every round the
//! owner of each shard publishes its account shares per campaign over core NATS (at most once:
//! what is lost is sent again next round), every node keeps each shard's latest, and gives each
//! of its shards what the other shards' shares add up to. A shard's book then scores an
//! account from its own leads, current, and the others', as of a round or two ago.
//!
//! Nothing is published while no filter or rule reads `account.score`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use leadscore_proto::prost::Message;
use leadscore_proto::v1 as pb;
use tokio::sync::watch;
use tracing::warn;

use super::accounts::{share_in, share_out};
use super::engines::Engines;
use leadscore_cluster::{Nats, ShardId};
use leadscore_services::scoring::AccountShare;
use leadscore_services::scoring::accounts::add_up;

const SUBJECT: &str = "leadscore.accounts";
/// How often each shard's shares are published and the others' taken in.
const ROUND: Duration = Duration::from_secs(1);
/// A shard not heard from for this long (its owner died, or stopped publishing) counts for
/// nothing until its next owner publishes.
const FORGET_AFTER: Duration = Duration::from_secs(30);
/// At most this many chunks to a round: a larger message is refused as malformed.
const MAX_CHUNKS: u32 = 4096;

/// A shard's shares, heard whole.
type Shares = (ShardId, Arc<Vec<AccountShare>>);

/// Per shard and campaign, the newest round heard whole.
#[derive(Default)]
struct Heard {
    shards: HashMap<(ShardId, String), Latest>,
}

#[derive(Default)]
struct Latest {
    whole: Option<(Instant, Arc<Vec<AccountShare>>)>,
    /// The round coming in: its node and number, and its chunks so far.
    pending: (String, u64, Vec<Option<Vec<AccountShare>>>),
}

impl Heard {
    fn hear(&mut self, feed: pb::AccountFeed) {
        if feed.chunks == 0 || feed.chunks > MAX_CHUNKS || feed.chunk >= feed.chunks {
            warn!(shard = feed.shard, chunk = feed.chunk, chunks = feed.chunks, "an account feed message out of range");
            return;
        }
        let latest = self.shards.entry((feed.shard, feed.campaign)).or_default();
        if (latest.pending.0.as_str(), latest.pending.1) != (feed.node.as_str(), feed.round) {
            latest.pending = (feed.node, feed.round, vec![None; feed.chunks as usize]);
        }
        let chunks = &mut latest.pending.2;
        chunks[feed.chunk as usize] = Some(feed.shares.into_iter().map(share_in).collect());
        if chunks.iter().all(Option::is_some) {
            let shares = std::mem::take(chunks).into_iter().flatten().flatten().collect();
            latest.whole = Some((Instant::now(), Arc::new(shares)));
        }
    }

    /// Each campaign's shares heard recently enough, with their shard.
    fn recent(&self) -> HashMap<String, Vec<Shares>> {
        let mut recent: HashMap<String, Vec<_>> = HashMap::new();
        for ((shard, campaign), latest) in &self.shards {
            if let Some((at, shares)) = &latest.whole
                && at.elapsed() < FORGET_AFTER
            {
                recent.entry(campaign.clone()).or_default().push((*shard, shares.clone()));
            }
        }
        recent
    }
}

/// Publishes and takes in account shares every round until the node closes.
pub(super) async fn run(engines: Arc<Engines>, nats: Nats, node: String, mut closing: watch::Receiver<bool>) {
    let heard = Arc::new(Mutex::new(Heard::default()));
    let hearing = heard.clone();
    nats.listen(SUBJECT, move |payload| match pb::AccountFeed::decode(payload) {
        Ok(feed) => hearing.lock().unwrap_or_else(|e| e.into_inner()).hear(feed),
        Err(e) => warn!(cause = %e, "an account feed message that does not decode"),
    });
    let mut round = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(ROUND) => {}
            _ = closing.changed() => return,
        }
        round += 1;
        let (engines, nats, heard, node) = (engines.clone(), nats.clone(), heard.clone(), node.clone());
        let feeding = tokio::task::spawn_blocking(move || feed_round(&engines, &nats, &heard, &node, round));
        if let Err(e) = feeding.await {
            warn!(cause = %e, "an account feed round failed");
        }
    }
}

/// One round: each shard's shares out, and each shard given the others'.
fn feed_round(engines: &Engines, nats: &Nats, heard: &Mutex<Heard>, node: &str, round: u64) {
    let mut own = Vec::new();
    for (shard, context) in engines.served() {
        for (campaign, depth, shares) in context.scoring.shares_to_publish() {
            publish(
                nats,
                pb::AccountFeed {
                    shard,
                    campaign: campaign.to_string(),
                    node: node.into(),
                    round,
                    ..Default::default()
                },
                &shares,
            );
            own.push((shard, context.clone(), campaign, depth, shares));
        }
    }
    if own.is_empty() {
        return;
    }
    let recent = heard.lock().unwrap_or_else(|e| e.into_inner()).recent();
    let none = Vec::new();
    for (shard, context, campaign, depth, shares) in own {
        let heard = recent.get(&*campaign).unwrap_or(&none);
        let elsewhere = elsewhere(shard, &shares, heard, depth);
        let moved = context.scoring.set_accounts_elsewhere(&campaign, elsewhere);
        context.dialer.requeue(&moved);
    }
}

/// For each account `own` has leads of, what the other shards' shares add up to.
fn elsewhere(
    shard: ShardId,
    own: &[AccountShare],
    heard: &[Shares],
    depth: usize,
) -> HashMap<CompactString, AccountShare> {
    let mine: HashSet<&str> = own.iter().map(|share| share.account.as_str()).collect();
    let theirs = heard.iter().filter(|(from, _)| *from != shard).flat_map(|(_, shares)| shares.iter());
    add_up(theirs.filter(|share| mine.contains(share.account.as_str())).cloned(), depth)
}

/// Publishes a shard's shares in one message, or in as many as keep each within half the
/// servers' largest (a shard of many accounts).
fn publish(nats: &Nats, feed: pb::AccountFeed, shares: &[AccountShare]) {
    let encoded: Vec<pb::AccountShare> = shares.iter().cloned().map(share_out).collect();
    let size: usize = encoded.iter().map(|share| share.encoded_len() + 4).sum();
    let chunks = size.div_ceil((nats.max_payload() / 2).max(1)).max(1);
    let per_chunk = encoded.len().div_ceil(chunks).max(1);
    let mut pieces: Vec<Vec<pb::AccountShare>> = encoded.chunks(per_chunk).map(<[_]>::to_vec).collect();
    if pieces.is_empty() {
        pieces.push(Vec::new());
    }
    let chunks = pieces.len() as u32;
    for (chunk, shares) in pieces.into_iter().enumerate() {
        let message = pb::AccountFeed { chunk: chunk as u32, chunks, shares, ..feed.clone() };
        nats.publish(SUBJECT, message.encode_to_vec().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(account: &str, leads: usize, best: &[(&str, f64)]) -> AccountShare {
        AccountShare {
            account: account.into(),
            leads,
            sum: best.iter().map(|(_, s)| s).sum(),
            best: best.iter().map(|(id, s)| ((*id).into(), *s)).collect(),
            fit: None,
        }
    }

    #[test]
    fn a_shard_is_given_the_other_shards_shares_of_its_own_accounts_only() {
        let own = [share("acme.com", 1, &[("a1", 10.0)])];
        let heard = vec![
            (0, Arc::new(vec![share("acme.com", 1, &[("a1", 10.0)])])),
            (
                1,
                Arc::new(vec![
                    share("acme.com", 2, &[("a2", 50.0), ("a3", 5.0)]),
                    share("globex.com", 1, &[("g", 9.0)]),
                ]),
            ),
            (2, Arc::new(vec![share("acme.com", 1, &[("a4", 30.0)])])),
        ];
        let others = elsewhere(0, &own, &heard, 2);
        assert_eq!(others.len(), 1, "only acme.com has leads on shard 0");
        let acme = &others["acme.com"];
        assert_eq!((acme.leads, acme.sum), (3, 85.0));
        assert_eq!(acme.best, vec![("a2".into(), 50.0), ("a4".into(), 30.0)]);
    }

    #[test]
    fn a_round_is_taken_once_every_chunk_of_it_is_heard() {
        let mut heard = Heard::default();
        let feed = |round, chunk, account: &str| pb::AccountFeed {
            shard: 3,
            campaign: "default".into(),
            node: "node-a".into(),
            round,
            chunk,
            chunks: 2,
            shares: vec![share_out(share(account, 1, &[("x", 1.0)]))],
        };
        heard.hear(feed(1, 0, "a.com"));
        assert!(heard.recent().is_empty(), "half a round");
        heard.hear(feed(2, 1, "b.com"));
        heard.hear(feed(2, 0, "c.com"));
        let recent = heard.recent();
        let names: Vec<&str> = recent["default"][0].1.iter().map(|s| s.account.as_str()).collect();
        assert_eq!(names, ["c.com", "b.com"], "round 2 whole, round 1's chunk dropped");
        heard.hear(pb::AccountFeed { chunk: 2, ..feed(3, 0, "d.com") });
        assert_eq!(heard.recent()["default"][0].1.len(), 2, "a chunk out of range is refused");
    }
}
