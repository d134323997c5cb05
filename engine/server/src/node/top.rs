//! Ranked lists gathered from shards. A shard's top k holds every lead of the global top k that
//! is in that shard, so the global list is the merge of the shards' lists, cut at k.
//!
//! A watched list on a node keeps each shard's watched list as the shard sends it (a snapshot,
//! then its diffs) and sends the client the diffs that turn the merged list it was sent into the
//! merged list now. Its `seq` is the sum of the shards' own: it grows with every change any of
//! them makes, so the client's list is current to it as to one node's.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::StreamExt as _;
use futures_util::future::{try_join, try_join_all};
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::tonic::{Request, Response, Status};
use leadscore_proto::v1 as pb;
use pb::cluster_service_client::ClusterServiceClient;
use pb::watch_top_leads_response::Change;

use super::front::{Front, Streamed, fan_in, forwarded, part_of, read_here, unreachable};
use crate::api::Context;
use crate::api::scoring::convert;
use crate::api::status::status;
use leadscore_cluster::ShardId;
use leadscore_services::scoring::TopQuery;
use leadscore_store::lead::LeadId;

/// A lead among the best of some shards, with its score.
type Key = (LeadId, f64);

impl Front {
    /// `TopLeads` over every shard, and the sum of the shards' ranking seqs (if each has one).
    /// Every shard's keys (ids and scores) are merged first; only the best `limit` are then
    /// listed (where each stands, who it is, its factors), by the shards that hold them: a list
    /// costs `limit` listings, not `limit` per shard.
    pub(super) async fn top_leads_gathered(
        &self,
        request: &Request<pb::TopLeadsRequest>,
    ) -> Result<(Vec<pb::RankedLead>, Option<u64>), Status> {
        let query = convert::top_query(request.get_ref())?;
        let (here, there) = self.parts(request)?;
        let there: Vec<_> = there.into_iter().collect();
        let local = keys_here(here.clone(), query.clone());
        let remote = there.iter().map(|(address, (channel, shards))| {
            let asking = pb::TopKeysRequest { query: Some(request.get_ref().clone()), shards: shards.clone() };
            let asking = forwarded(part_of(request, asking), shards);
            let mut client = self.cluster_client(channel.clone());
            async move { client.top_keys(asking).await.map(Response::into_inner).map_err(|e| unreachable(e, address)) }
        });
        let ((seq, local), remote) = try_join(local, try_join_all(remote)).await?;
        // Each key with where it came from: `None` here, else the other node's place in `there`.
        let mut keys: Vec<(Key, Option<usize>)> = local.into_iter().map(|key| (key, None)).collect();
        let mut seq = seq;
        for (node, answer) in remote.into_iter().enumerate() {
            seq = seq.zip(answer.seq).map(|(a, b)| a + b);
            keys.extend(answer.keys.into_iter().map(|key| ((key.lead_id.into(), key.score), Some(node))));
        }
        keys.sort_by(|(a, _), (b, _)| best_key(a, b));
        keys.truncate(query.limit);

        let mut chosen: BTreeMap<Option<usize>, Vec<Key>> = BTreeMap::new();
        for (key, from) in &keys {
            chosen.entry(*from).or_default().push(key.clone());
        }
        let local = self.listed_here(here, query, chosen.remove(&None).unwrap_or_default());
        let remote = chosen.into_iter().map(|(node, leads)| {
            let (address, (channel, shards)) = &there[node.expect("the local keys were taken out")];
            let leads = leads.into_iter().map(|(id, score)| pb::RankedKey { lead_id: id.to_string(), score }).collect();
            let asking = pb::RankedRequest { query: Some(request.get_ref().clone()), leads, shards: shards.clone() };
            let asking = forwarded(part_of(request, asking), shards);
            let mut client = self.cluster_client(channel.clone());
            async move {
                let answer = client.ranked(asking).await.map_err(|e| unreachable(e, address))?;
                Ok::<_, Status>(answer.into_inner().leads)
            }
        });
        let (local, remote) = try_join(local, try_join_all(remote)).await?;
        let mut listed: HashMap<String, pb::RankedLead> = local
            .into_iter()
            .chain(remote.into_iter().flatten())
            .map(|lead| (lead_id(&lead).to_owned(), lead))
            .collect();
        // In the merged order; a lead erased between the two looks is left out.
        let ranked = keys.iter().filter_map(|((id, _), _)| listed.remove(id.as_str()));
        let ranked = ranked.enumerate().map(|(rank, lead)| pb::RankedLead { rank: rank as u32 + 1, ..lead });
        Ok((ranked.collect(), seq))
    }

    /// `ClusterService.TopKeys`: the keys of the shards a forwarded call names, merged.
    pub(super) async fn top_keys_here(&self, asked: pb::TopKeysRequest) -> Result<pb::TopKeysResponse, Status> {
        let query = convert::top_query(&asked.query.unwrap_or_default())?;
        let (seq, keys) = keys_here(self.all_here(&asked.shards)?, query).await?;
        let keys = keys.into_iter().map(|(id, score)| pb::RankedKey { lead_id: id.to_string(), score }).collect();
        Ok(pb::TopKeysResponse { keys, seq })
    }

    /// `ClusterService.Ranked`: the listings of leads on the shards a forwarded call names.
    pub(super) async fn ranked_here(&self, asked: pb::RankedRequest) -> Result<pb::RankedResponse, Status> {
        let query = convert::top_query(&asked.query.unwrap_or_default())?;
        let chosen = asked.leads.into_iter().map(|key| (LeadId::from(key.lead_id.as_str()), key.score)).collect();
        let leads = self.listed_here(self.all_here(&asked.shards)?, query, chosen).await?;
        Ok(pb::RankedResponse { leads })
    }

    /// The listings of `chosen` leads, each by its shard here.
    async fn listed_here(
        &self,
        here: Vec<(ShardId, Context)>,
        query: TopQuery,
        chosen: Vec<Key>,
    ) -> Result<Vec<pb::RankedLead>, Status> {
        let mut by_shard: HashMap<ShardId, Vec<Key>> = HashMap::new();
        for key in chosen {
            by_shard.entry(self.shard(&key.0)).or_default().push(key);
        }
        let here: Vec<_> = here.into_iter().filter(|(shard, _)| by_shard.contains_key(shard)).collect();
        let listed = read_here(here, "listing ranked leads", move |shard, context| {
            let listed = context.dialer.listed_of(&query, &by_shard[&shard]).map_err(status)?;
            Ok(listed.into_iter().map(convert::ranked_out).collect::<Vec<_>>())
        });
        Ok(listed.await?.into_iter().flatten().collect())
    }

    fn cluster_client(&self, channel: Channel) -> ClusterServiceClient<Channel> {
        let max = self.0.max_message_bytes;
        ClusterServiceClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }
}

/// The best `query.limit` keys of the shards here, merged, and the sum of their ranking seqs
/// (each read before its ranking, as one node does: every change numbered up to it is in).
async fn keys_here(here: Vec<(ShardId, Context)>, query: TopQuery) -> Result<(Option<u64>, Vec<Key>), Status> {
    let limit = query.limit;
    let parts = read_here(here, "ranking shards here", move |_, context| {
        let seq = context.scoring.ranking_seq(&query.campaign);
        Ok((seq, context.dialer.top_keys(&query).map_err(status)?))
    });
    let (seqs, lists): (Vec<Option<u64>>, Vec<Vec<Key>>) = parts.await?.into_iter().unzip();
    let mut keys: Vec<Key> = lists.into_iter().flatten().collect();
    keys.sort_by(best_key);
    keys.truncate(limit);
    Ok((seqs.into_iter().sum(), keys))
}

/// Best first, as `best_first` orders listed leads.
fn best_key(a: &Key, b: &Key) -> Ordering {
    b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal).then_with(|| a.0.cmp(&b.0))
}

/// Best first: the higher score, then the lower lead id, as a single node ranks them.
pub(super) fn best_first(a: &pb::RankedLead, b: &pb::RankedLead) -> Ordering {
    let score = |lead: &pb::RankedLead| lead.score.as_ref().map_or(f64::NEG_INFINITY, |s| s.score);
    score(b).partial_cmp(&score(a)).unwrap_or(Ordering::Equal).then_with(|| lead_id(a).cmp(lead_id(b)))
}

fn lead_id(lead: &pb::RankedLead) -> &str {
    lead.score.as_ref().map_or("", |s| s.lead_id.as_str())
}

/// The same lead as the client shows it, wherever it is ranked: a rank follows from the place.
fn same(a: &pb::RankedLead, b: &pb::RankedLead) -> bool {
    (&a.score, &a.dialing, &a.card) == (&b.score, &b.dialing, &b.card)
}

/// The best `limit` of the shards' lists, ranked from 1: only those are copied.
pub(super) fn merge<'a>(lists: impl IntoIterator<Item = &'a pb::RankedLead>, limit: usize) -> Vec<pb::RankedLead> {
    let mut merged: Vec<&pb::RankedLead> = lists.into_iter().collect();
    merged.sort_by(|a, b| best_first(a, b));
    merged.truncate(limit);
    let ranked = |(rank, lead): (usize, &pb::RankedLead)| pb::RankedLead { rank: rank as u32 + 1, ..lead.clone() };
    merged.into_iter().enumerate().map(ranked).collect()
}

/// One shard's (or one node's shards') watched list, as it sent it.
#[derive(Default)]
struct Part {
    seq: u64,
    leads: Vec<pb::RankedLead>,
    /// Its snapshot came.
    started: bool,
    /// Nothing it sent since its last snapshot or catch-up is left unsaid.
    caught_up: bool,
}

impl Part {
    fn take(&mut self, message: pb::WatchTopLeadsResponse) {
        self.seq = message.seq;
        let at = |leads: &Vec<pb::RankedLead>, rank: u32| (rank.max(1) as usize - 1).min(leads.len());
        match message.change {
            Some(Change::Snapshot(snapshot)) => {
                self.leads = snapshot.leads;
                (self.started, self.caught_up) = (true, true);
                return;
            }
            Some(Change::Entered(lead)) => self.leads.insert(at(&self.leads, lead.rank), lead),
            Some(Change::Left(id)) => self.leads.retain(|listed| lead_id(listed) != id),
            Some(Change::Moved(lead)) => {
                self.leads.retain(|listed| lead_id(listed) != lead_id(&lead));
                self.leads.insert(at(&self.leads, lead.rank), lead);
            }
            Some(Change::CaughtUp(_)) => {
                self.caught_up = true;
                return;
            }
            None => {}
        }
        self.caught_up = false;
    }
}

/// The client's list and the parts it is merged from.
struct Merged {
    limit: usize,
    parts: Vec<Part>,
    /// The list as the client has it after what was sent; `None` before the snapshot.
    sent: Option<Vec<pb::RankedLead>>,
    /// The seq last said caught up to.
    said: u64,
}

impl Merged {
    /// What to send after part `from` sent `message`.
    fn take(&mut self, from: usize, message: pb::WatchTopLeadsResponse) -> Vec<pb::WatchTopLeadsResponse> {
        self.parts[from].take(message);
        if !self.parts.iter().all(|part| part.started) {
            return Vec::new();
        }
        let seq = self.parts.iter().map(|part| part.seq).sum();
        let now = merge(self.parts.iter().flat_map(|part| &part.leads), self.limit);
        let out = |change| pb::WatchTopLeadsResponse { seq, change: Some(change) };
        let mut messages: Vec<_> = match self.sent.replace(now.clone()) {
            None => {
                self.said = seq;
                vec![out(Change::Snapshot(pb::TopLeadsSnapshot { leads: now }))]
            }
            Some(before) => diffs(before, &now).into_iter().map(out).collect(),
        };
        if self.parts.iter().all(|part| part.caught_up) && seq > self.said {
            self.said = seq;
            messages.push(out(Change::CaughtUp(true)));
        }
        messages
    }
}

/// The changes that turn `before` into `after`, applied in order by a client (leaving moves
/// those after up, entering moves them down): first every lead that left, then, rank by rank,
/// each that is new there (entered) or differs (moved).
fn diffs(before: Vec<pb::RankedLead>, after: &[pb::RankedLead]) -> Vec<Change> {
    let listed: HashSet<&str> = after.iter().map(lead_id).collect();
    let (mut list, left): (Vec<_>, Vec<_>) = before.into_iter().partition(|lead| listed.contains(lead_id(lead)));
    let mut changes: Vec<Change> = left.iter().map(|lead| Change::Left(lead_id(lead).to_owned())).collect();
    for (i, lead) in after.iter().enumerate() {
        if list.get(i).is_some_and(|listed| same(listed, lead)) {
            continue;
        }
        let known = list.iter().position(|listed| lead_id(listed) == lead_id(lead));
        if let Some(j) = known {
            list.remove(j);
        }
        list.insert(i, lead.clone());
        changes.push(if known.is_some() { Change::Moved(lead.clone()) } else { Change::Entered(lead.clone()) });
    }
    changes
}

/// One watched list merged from `parts`' (named for the error when one ends), cut at `limit`.
/// It ends when any part ends or fails: the client watches again.
pub(super) fn watch_merged(
    parts: Vec<(String, Streamed<pb::WatchTopLeadsResponse>)>,
    limit: usize,
) -> impl tokio_stream::Stream<Item = Result<pb::WatchTopLeadsResponse, Status>> {
    let count = parts.len();
    let numbered = parts
        .into_iter()
        .enumerate()
        .map(|(i, (what, part))| (what, Box::pin(part.map(move |m| m.map(|m| (i, m)))) as Streamed<_>))
        .collect();
    let mut merged =
        Merged { limit, parts: std::iter::repeat_with(Part::default).take(count).collect(), sent: None, said: 0 };
    fan_in(numbered).flat_map(move |item| {
        let messages = match item {
            Ok((from, message)) => merged.take(from, message).into_iter().map(Ok).collect(),
            Err(status) => vec![Err(status)],
        };
        tokio_stream::iter(messages)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(id: &str, score: f64) -> pb::RankedLead {
        pb::RankedLead {
            score: Some(pb::LeadScore { lead_id: id.into(), score, ..Default::default() }),
            ..Default::default()
        }
    }

    /// Each lead's id and its place.
    fn ids(leads: &[pb::RankedLead]) -> Vec<(&str, usize)> {
        leads.iter().enumerate().map(|(i, lead)| (lead_id(lead), i + 1)).collect()
    }

    fn message(seq: u64, change: Change) -> pb::WatchTopLeadsResponse {
        pb::WatchTopLeadsResponse { seq, change: Some(change) }
    }

    fn snapshot(leads: Vec<pb::RankedLead>) -> Change {
        Change::Snapshot(pb::TopLeadsSnapshot { leads: merge(&leads, usize::MAX) })
    }

    /// The client's side: a list the messages are applied to as the proto says.
    fn apply(list: &mut Vec<pb::RankedLead>, messages: &[pb::WatchTopLeadsResponse]) {
        let mut part = Part { leads: std::mem::take(list), ..Default::default() };
        for message in messages {
            part.take(message.clone());
        }
        *list = part.leads;
    }

    #[test]
    fn diffs_applied_in_order_give_the_new_list_whatever_moved() {
        let lists = [
            vec![("a", 9.0), ("b", 8.0), ("c", 7.0), ("d", 6.0)],
            vec![("d", 9.5), ("a", 9.0), ("c", 7.0), ("e", 1.0)],
            vec![("e", 3.0)],
            vec![],
            vec![("c", 7.0), ("b", 8.5), ("a", 9.0)],
            vec![("a", 9.0), ("b", 8.5), ("c", 7.5)],
        ];
        let list = |pairs: &Vec<(&str, f64)>| {
            let leads: Vec<_> = pairs.iter().map(|&(id, s)| ranked(id, s)).collect();
            merge(&leads, usize::MAX)
        };
        for before in &lists {
            for after in &lists {
                let (before, after) = (list(before), list(after));
                let mut client = before.clone();
                let sent: Vec<_> = diffs(before, &after).into_iter().map(|c| message(1, c)).collect();
                apply(&mut client, &sent);
                assert_eq!(ids(&client), ids(&after));
                assert!(client.iter().zip(&after).all(|(c, a)| same(c, a)), "{client:?}\n{after:?}");
            }
        }
    }

    #[test]
    fn a_merged_watch_sends_one_snapshot_once_every_part_has_and_then_the_merged_diffs() {
        let mut merged = Merged { limit: 3, parts: vec![Part::default(), Part::default()], sent: None, said: 0 };
        assert!(merged.take(0, message(4, snapshot(vec![ranked("a", 9.0), ranked("c", 5.0)]))).is_empty());
        let first = merged.take(1, message(7, snapshot(vec![ranked("b", 8.0), ranked("d", 4.0)])));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].seq, 11);
        let Some(Change::Snapshot(shown)) = &first[0].change else { panic!("{first:?}") };
        assert_eq!(ids(&shown.leads), [("a", 1), ("b", 2), ("c", 3)]);
        assert_eq!(shown.leads.iter().map(|lead| lead.rank).collect::<Vec<_>>(), [1, 2, 3]);

        // Shard 1's d rises above everything: it enters first, and c falls off the cut.
        let mut client = shown.leads.clone();
        let mut d = ranked("d", 9.5);
        d.rank = 1;
        let sent = merged.take(1, message(8, Change::Moved(d)));
        assert!(sent.iter().all(|m| m.seq == 12), "{sent:?}");
        apply(&mut client, &sent);
        assert_eq!(ids(&client), [("d", 1), ("a", 2), ("b", 3)]);
        // Both parts caught up: said once, at the sum.
        let said = merged.take(1, message(8, Change::CaughtUp(true)));
        assert_eq!(said, [message(12, Change::CaughtUp(true))]);
        assert!(merged.take(0, message(4, Change::CaughtUp(true))).is_empty(), "said twice");
        // A change below the cut sends no diff.
        let mut e = ranked("e", 1.0);
        e.rank = 3;
        assert!(merged.take(0, message(5, Change::Entered(e))).is_empty());
        assert_eq!(merged.take(0, message(5, Change::CaughtUp(true))), [message(13, Change::CaughtUp(true))]);
    }
}
