//! Ranked lists gathered from shards. A shard's top k holds every lead of the global top k that
//! is in that shard, so the global list is the merge of the shards' lists, cut at k.
//!
//! A watched list on a node keeps each shard's watched list as the shard sends it (a snapshot,
//! then its diffs) and sends the client the diffs that turn the merged list it was sent into the
//! merged list now. Its `seq` is the sum of the shards' own: it grows with every change any of
//! them makes, so the client's list is current to it as to one node's.

use std::cmp::Ordering;
use std::collections::HashSet;

use futures_util::StreamExt as _;
use leadscore_proto::tonic::Status;
use leadscore_proto::v1 as pb;
use pb::watch_top_leads_response::Change;

use super::front::{Streamed, fan_in};

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
