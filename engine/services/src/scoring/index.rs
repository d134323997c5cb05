//! The current score of every lead, and per campaign an ordered set of (score, lead) so that
//! ranking reads the top of a tree instead of sorting per call.
//!
//! A lead's scores change only under its entry's lock, and only forwards (a newer configuration,
//! a newer lead, or a later time), so a band crossing is announced exactly once, in order.
//! Nothing outside the index is called under an entry's lock: `apply` says whether the lead
//! changed, and the caller tells whoever follows (the dialer) once the lock is released.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use compact_str::CompactString;
use dashmap::mapref::entry::Entry as Slot;
use tokio::sync::broadcast;

use super::accounts::{AccountScore, AccountShare, Book, Place};
use super::pipeline::{Band, Campaign};
use super::recent::Recent;
use leadscore_config::Composition;
use leadscore_store::lead::{LeadId, LeadMap};
use leadscore_store::sync::{Mutex, Rank, RwLock, hold};

/// Crossings buffered per subscriber before a slow one is told it fell behind.
pub const CROSSING_BUFFER: usize = 4096;
/// Ranking changes buffered per watcher of a ranked list before a slow one starts over.
pub const RANK_CHANGE_BUFFER: usize = 16_384;

/// A lead's scores as of one scoring.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The pipeline generation, the lead's sequence number and the time it was scored at: a
    /// score replaces another only if this triple is not older.
    pub version: u64,
    pub config_version: u64,
    pub lsn: u64,
    pub scored_at_ms: i64,
    /// The scorers' names (shared by every lead of one pipeline) and each one's score and
    /// points.
    pub scorer_names: Arc<[Arc<str>]>,
    pub scorers: Box<[f64]>,
    pub points: Box<[f64]>,
    /// The campaigns that score this lead.
    pub campaigns: Box<[CampaignScore]>,
    /// The account the lead names, normalised.
    pub account: Option<CompactString>,
}

impl Entry {
    fn from_update(update: &Update<'_>) -> Self {
        Self {
            version: update.version,
            config_version: update.config_version,
            lsn: update.lsn,
            scored_at_ms: update.scored_at_ms,
            scorer_names: update.scorer_names.clone(),
            scorers: update.scorers.into(),
            points: update.points.into(),
            campaigns: update.campaigns.into(),
            account: update.account.cloned(),
        }
    }

    /// Takes the update's values, reusing this entry's memory where the shape matches.
    fn assign(&mut self, update: &Update<'_>) {
        self.version = update.version;
        self.config_version = update.config_version;
        self.lsn = update.lsn;
        self.scored_at_ms = update.scored_at_ms;
        if !Arc::ptr_eq(&self.scorer_names, update.scorer_names) {
            self.scorer_names = update.scorer_names.clone();
        }
        if self.scorers.len() == update.scorers.len() {
            self.scorers.copy_from_slice(update.scorers);
            self.points.copy_from_slice(update.points);
        } else {
            self.scorers = update.scorers.into();
            self.points = update.points.into();
        }
        let same_campaigns = self.campaigns.len() == update.campaigns.len()
            && self.campaigns.iter().zip(update.campaigns).all(|(a, b)| Arc::ptr_eq(&a.0, &b.0));
        if same_campaigns {
            for (held, new) in self.campaigns.iter_mut().zip(update.campaigns) {
                (held.1, held.2) = (new.1, new.2);
            }
        } else {
            self.campaigns = update.campaigns.into();
        }
        if self.account.as_ref() != update.account {
            self.account = update.account.cloned();
        }
    }

    /// Whether the update changes the lead or a campaign's score: a sweep that only finds
    /// the same scores again need not tell the watcher.
    fn differs_from(&self, update: &Update<'_>) -> bool {
        self.lsn != update.lsn
            || self.account.as_ref() != update.account
            || self.campaigns.len() != update.campaigns.len()
            || self.campaigns.iter().zip(update.campaigns).any(|(a, b)| a.0 != b.0 || a.1 != b.1)
    }

    fn is_newer_than(&self, update: &Update<'_>) -> bool {
        (self.version, self.lsn, self.scored_at_ms) > (update.version, update.lsn, update.scored_at_ms)
    }
}

/// One campaign's view of a lead: campaign name, composite score and band.
pub type CampaignScore = (Arc<str>, f64, Band);

/// New scores for a lead, borrowed: applying them to an existing entry allocates nothing when
/// the shape (scorers, campaigns) is unchanged, which is the common case in a sweep.
#[derive(Clone, Copy, Debug)]
pub struct Update<'a> {
    pub version: u64,
    pub config_version: u64,
    pub lsn: u64,
    pub scored_at_ms: i64,
    pub scorer_names: &'a Arc<[Arc<str>]>,
    pub scorers: &'a [f64],
    pub points: &'a [f64],
    pub campaigns: &'a [CampaignScore],
    pub account: Option<&'a CompactString>,
}

/// A lead entering, leaving or moving between bands of a campaign.
#[derive(Clone, Debug, PartialEq)]
pub struct Crossing {
    pub lead_id: LeadId,
    pub campaign: Arc<str>,
    /// `None` when the lead was not scored in this campaign before.
    pub from: Option<Band>,
    pub to: Band,
    pub score: f64,
    pub at_ms: i64,
}

/// A change to a campaign's ranking, numbered in the order the ranking took it: a lead's
/// score there now (`None`: it left the ranking), or, its score unchanged, the lead itself
/// changed (its attributes or calls), which a filtered list may need to know.
#[derive(Clone, Debug, PartialEq)]
pub struct RankChange {
    pub campaign: Arc<str>,
    pub seq: u64,
    pub lead: LeadId,
    pub score: Option<f64>,
}

/// What `apply` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// What was recorded is newer, or the same.
    Unchanged,
    Changed,
    /// The lead had no entry: new, or erased while it was being scored (the caller checks).
    Added,
}

/// Orders by score, best first, then by id.
type Key = (Reverse<u64>, LeadId);

/// One campaign's leads ranked, and its accounts.
#[derive(Debug)]
struct Ranking {
    leads: Mutex<BTreeSet<Key>>,
    /// Changes made to `leads` (and leads touched in it) so far; counted under its lock.
    seq: AtomicU64,
    /// The watched lists' floors by watcher: the least score a lead can join each list at.
    floors: Mutex<HashMap<u64, f64>>,
    /// The least of `floors` (`f64` bits; infinite when nobody watches): a change that moves a
    /// lead only below it is sent to nobody, so a watcher costs the changes near its list.
    floor: AtomicU64,
    accounts: Mutex<Book>,
    /// An account's fit is in points or on the 0-100 scale, as the campaign composes.
    composition: Composition,
}

impl Ranking {
    /// A lead's place in its account from its scores in this campaign.
    fn place(&self, score: f64, names: &[Arc<str>], scorers: &[f64], points: &[f64]) -> Place {
        let fit = names.iter().position(|n| &**n == "fit").map(|i| match self.composition {
            Composition::Points => points[i],
            Composition::WeightedMean => scorers[i],
        });
        Place { score, fit: fit.unwrap_or(f64::NAN) }
    }
}

#[derive(Debug)]
pub struct ScoreIndex {
    entries: LeadMap<Entry>,
    ranked: RwLock<HashMap<Arc<str>, Ranking>>,
    /// Crossings are queued here under the entry's lock, which orders them; subscribers read
    /// them in their own tasks. Sending never blocks and runs none of our code.
    crossings: broadcast::Sender<Crossing>,
    /// The latest crossings, kept as each is sent.
    pub recent: Recent,
    /// Ranking changes, sent under the ranking's lock in the order they are made.
    changes: broadcast::Sender<RankChange>,
    /// Names the watchers of lists.
    watchers: AtomicU64,
}

impl ScoreIndex {
    pub fn new(campaigns: &[Campaign]) -> Self {
        let index = Self {
            entries: LeadMap::default(),
            ranked: RwLock::new(Rank::Rankings, HashMap::new()),
            crossings: broadcast::channel(CROSSING_BUFFER).0,
            recent: Recent::default(),
            changes: broadcast::channel(RANK_CHANGE_BUFFER).0,
            watchers: AtomicU64::new(0),
        };
        index.set_campaigns(campaigns);
        index
    }

    /// Keeps the rankings of these campaigns (new ones start empty) and drops the others;
    /// accounts take their campaign's roll-up rule.
    pub fn set_campaigns(&self, campaigns: &[Campaign]) {
        let mut ranked = self.ranked.write();
        ranked.retain(|name, _| campaigns.iter().any(|c| c.name == *name));
        for campaign in campaigns {
            let ranking = ranked.entry(campaign.name.clone()).or_insert_with(|| Ranking {
                leads: Mutex::new(Rank::Ranking, BTreeSet::new()),
                seq: AtomicU64::new(0),
                floors: Mutex::new(Rank::WatchFloors, HashMap::new()),
                floor: AtomicU64::new(f64::INFINITY.to_bits()),
                accounts: Mutex::new(Rank::Accounts, Book::new(campaign.account, campaign.bands)),
                composition: campaign.composition,
            });
            ranking.composition = campaign.composition;
            ranking.accounts.lock().set_rule(campaign.account, campaign.bands);
        }
    }

    /// Records a lead's new scores unless what is recorded is newer; announces band crossings.
    /// Says whether the lead or one of its campaign scores changed, so that the caller can
    /// requeue it once no lock is held, and whether an account's score moved with it.
    pub fn apply(&self, id: &LeadId, update: Update<'_>) -> (Applied, bool) {
        let _held = hold(Rank::ScoreEntry);
        // The lead is usually known: look it up without cloning its id.
        if let Some(mut entry) = self.entries.get_mut(id) {
            return self.assign(id, &mut entry, &update);
        }
        match self.entries.entry(id.clone()) {
            Slot::Occupied(mut slot) => self.assign(id, slot.get_mut(), &update),
            Slot::Vacant(slot) => {
                let moved = self.rank(id, None, &update);
                let _entry = slot.insert(Entry::from_update(&update));
                (Applied::Added, moved)
            }
        }
    }

    /// Moves a known lead to its new scores unless what it has is newer.
    fn assign(&self, id: &LeadId, entry: &mut Entry, update: &Update<'_>) -> (Applied, bool) {
        if entry.is_newer_than(update) {
            return (Applied::Unchanged, false);
        }
        let moved = self.rank(id, Some(entry), update);
        let changed = entry.differs_from(update);
        entry.assign(update);
        (if changed { Applied::Changed } else { Applied::Unchanged }, moved)
    }

    /// Forgets an erased lead.
    pub fn remove(&self, id: &str) {
        let removed = {
            let _held = hold(Rank::ScoreEntry);
            self.entries.remove(id)
        };
        if let Some((id, old)) = removed {
            let ranked = self.ranked.read();
            for (campaign, score, _) in old.campaigns.iter() {
                if let Some(ranking) = ranked.get(campaign) {
                    let mut leads = ranking.leads.lock();
                    leads.remove(&key(*score, &id));
                    self.announce(ranking, campaign, &id, Some(*score), None);
                    drop(leads);
                    if old.account.is_some() {
                        ranking.accounts.lock().shift(&id, None);
                    }
                }
            }
        }
    }

    /// The account a lead names and that account's score in a campaign, with up to `leads`
    /// of its best leads.
    pub fn account_of(&self, id: &str, campaign: &str, leads: usize) -> Option<AccountScore> {
        let account = self.read(id, |entry| entry.account.clone())??;
        self.ranked.read().get(campaign)?.accounts.lock().get(&account, leads)
    }

    /// The score in a campaign of the account a lead names.
    pub fn account_score(&self, id: &str, campaign: &str) -> Option<f64> {
        let account = self.read(id, |entry| entry.account.clone())??;
        self.ranked.read().get(campaign)?.accounts.lock().score(&account)
    }

    /// A campaign's accounts, best first, each with up to `leads` of its best leads; `None` if
    /// the campaign has no ranking.
    pub fn top_accounts(&self, campaign: &str, limit: usize, leads: usize) -> Option<Vec<AccountScore>> {
        Some(self.ranked.read().get(campaign)?.accounts.lock().top(limit, leads))
    }

    /// Every account's share of this index's leads in a campaign (or only `only`'s), each with
    /// up to `best` of its best leads; `None` if the campaign has no ranking.
    pub fn account_shares(&self, campaign: &str, best: usize, only: Option<&str>) -> Option<Vec<AccountShare>> {
        Some(self.ranked.read().get(campaign)?.accounts.lock().shares(best, only))
    }

    /// Takes what the other shards' leads give each account in a campaign (see
    /// `Book::set_elsewhere`); the leads here of the accounts whose score moved.
    pub fn set_accounts_elsewhere(
        &self,
        campaign: &str,
        elsewhere: HashMap<CompactString, AccountShare>,
    ) -> Vec<LeadId> {
        let ranked = self.ranked.read();
        let Some(ranking) = ranked.get(campaign) else { return Vec::new() };
        let mut book = ranking.accounts.lock();
        book.set_elsewhere(elsewhere).iter().flat_map(|account| book.leads(account)).collect()
    }

    /// How many accounts each campaign has.
    pub fn account_counts(&self) -> Vec<(Arc<str>, usize)> {
        self.ranked.read().iter().map(|(name, ranking)| (name.clone(), ranking.accounts.lock().len())).collect()
    }

    /// The other leads of a lead's account, in any campaign.
    pub fn account_mates(&self, id: &LeadId) -> Vec<LeadId> {
        let Some(Some(account)) = self.read(id, |entry| entry.account.clone()) else { return Vec::new() };
        let mut mates: Vec<LeadId> =
            self.ranked.read().values().flat_map(|ranking| ranking.accounts.lock().leads(&account)).collect();
        mates.sort_unstable();
        mates.dedup();
        mates.retain(|mate| mate != id);
        mates
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.read(id, Entry::clone)
    }

    /// Calls `read` with the lead's entry under its lock: copy out what is needed.
    pub fn read<T>(&self, id: &str, read: impl FnOnce(&Entry) -> T) -> Option<T> {
        let _held = hold(Rank::ScoreEntry);
        self.entries.get(id).map(|entry| read(&entry))
    }

    /// Copies a lead's scores and points into the two vectors if the pipeline whose scorer
    /// names are `names` gave them, reading the lead at `lsn` or after; whether it did.
    pub fn scores_since(
        &self,
        id: &str,
        names: &Arc<[Arc<str>]>,
        lsn: u64,
        scores: &mut Vec<f64>,
        points: &mut Vec<f64>,
    ) -> bool {
        // Each pipeline has its own names: the same allocation means the same plugins.
        let found = |entry: &Entry| Arc::ptr_eq(&entry.scorer_names, names) && entry.lsn >= lsn;
        self.read(id, |entry| {
            found(entry) && {
                scores.clear();
                scores.extend_from_slice(&entry.scorers);
                points.clear();
                points.extend_from_slice(&entry.points);
                true
            }
        }) == Some(true)
    }

    /// Calls `read` with every entry, one shard of entries locked at a time.
    pub fn each(&self, mut read: impl FnMut(&Entry)) {
        let _held = hold(Rank::ScoreEntry);
        for entry in self.entries.iter() {
            read(&entry);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Crossing> {
        self.crossings.subscribe()
    }

    /// Every campaign's ranking changes from now on.
    pub fn watch_rankings(&self) -> broadcast::Receiver<RankChange> {
        self.changes.subscribe()
    }

    /// How many changes a campaign's ranking has taken: a change numbered at most this is in
    /// what the ranking shows now.
    pub fn ranking_seq(&self, campaign: &str) -> Option<u64> {
        let ranked = self.ranked.read();
        let ranking = ranked.get(campaign)?;
        let _leads = ranking.leads.lock();
        Some(ranking.seq.load(Ordering::SeqCst))
    }

    /// Numbers a change of a lead's score in a ranking (from `old` to `new`) and sends it to
    /// its watchers, if it reaches the floor of any watched list; called under the ranking's
    /// lock, so the numbers follow the order of the changes.
    fn announce(&self, ranking: &Ranking, campaign: &Arc<str>, id: &LeadId, old: Option<f64>, new: Option<f64>) {
        let seq = ranking.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let floor = f64::from_bits(ranking.floor.load(Ordering::SeqCst));
        let near = old.is_some_and(|s| s >= floor) || new.is_some_and(|s| s >= floor);
        if near && self.changes.receiver_count() > 0 {
            // Nobody listening is fine.
            let _ = self.changes.send(RankChange { campaign: campaign.clone(), seq, lead: id.clone(), score: new });
        }
    }

    /// A new watcher of a campaign's list, its floor 0 (every change reaches it) until it says.
    pub fn watch_list(&self, campaign: &str) -> u64 {
        let id = self.watchers.fetch_add(1, Ordering::SeqCst);
        self.set_floor(campaign, id, Some(0.0));
        id
    }

    /// Sets a watcher's floor: the least score a lead may join its list at (`None`: it stopped
    /// watching). Lowered before the watcher reads the ranking, raised after.
    pub fn set_floor(&self, campaign: &str, watcher: u64, floor: Option<f64>) {
        let ranked = self.ranked.read();
        let Some(ranking) = ranked.get(campaign) else { return };
        let mut floors = ranking.floors.lock();
        match floor {
            Some(floor) => _ = floors.insert(watcher, floor),
            None => _ = floors.remove(&watcher),
        }
        let least = floors.values().copied().fold(f64::INFINITY, f64::min);
        ranking.floor.store(least.to_bits(), Ordering::SeqCst);
    }

    /// Up to `limit` leads of a campaign, best first, starting after `after` (a lead id and its
    /// score) when given. `None` if the campaign has no ranking.
    pub fn top(&self, campaign: &str, after: Option<(f64, &LeadId)>, limit: usize) -> Option<Vec<(LeadId, f64)>> {
        let ranked = self.ranked.read();
        let set = ranked.get(campaign)?.leads.lock();
        let start = match after {
            Some((score, id)) => Bound::Excluded(key(score, id)),
            None => Bound::Unbounded,
        };
        Some(
            set.range((start, Bound::Unbounded))
                .take(limit)
                .map(|(Reverse(bits), id)| (id.clone(), f64::from_bits(*bits)))
                .collect(),
        )
    }

    /// Moves a lead within each campaign's ranking and its account, and announces band
    /// changes; whether an account's score moved. Runs under the lead's entry lock.
    fn rank(&self, id: &LeadId, old: Option<&Entry>, new: &Update<'_>) -> bool {
        let ranked = self.ranked.read();
        let before = |campaign: &Arc<str>| old.and_then(|old| old.campaigns.iter().find(|(c, ..)| c == campaign));
        // The books compare a lead's place with the one they hold, so only a lead in no
        // account before or after skips them.
        let in_accounts = new.account.is_some() || old.is_some_and(|old| old.account.is_some());
        let mut moved = false;
        // The lead itself changed since it was last scored: a filter on it may say otherwise.
        let touched = old.is_some_and(|old| old.lsn != new.lsn);
        if let Some(old) = old {
            for (campaign, score, _) in old.campaigns.iter() {
                let kept = new.campaigns.iter().any(|(c, s, _)| c == campaign && s == score);
                let stays = new.campaigns.iter().any(|(c, ..)| c == campaign);
                if let Some(ranking) = ranked.get(campaign) {
                    if !kept {
                        let mut leads = ranking.leads.lock();
                        leads.remove(&key(*score, id));
                        if !stays {
                            self.announce(ranking, campaign, id, Some(*score), None);
                        }
                    }
                    if in_accounts && !new.campaigns.iter().any(|(c, ..)| c == campaign) {
                        moved |= ranking.accounts.lock().shift(id, None);
                    }
                }
            }
        }
        for (campaign, score, band) in new.campaigns.iter() {
            let previous = before(campaign);
            if let Some(ranking) = ranked.get(campaign) {
                let rescored = previous.is_none_or(|(_, s, _)| s != score);
                // New bands (a configuration change) move a lead in or out of a banded list.
                let rebanded = previous.is_some_and(|(_, _, b)| b != band);
                if rescored || touched || rebanded {
                    let mut leads = ranking.leads.lock();
                    if rescored {
                        leads.insert(key(*score, id));
                    }
                    self.announce(ranking, campaign, id, previous.map(|(_, s, _)| *s), Some(*score));
                }
                if in_accounts {
                    let place = ranking.place(*score, new.scorer_names, new.scorers, new.points);
                    let to = new.account.map(|account| (account.as_str(), place));
                    moved |= ranking.accounts.lock().shift(id, to);
                }
            }
            let from = previous.map(|(_, _, band)| *band);
            if from != Some(*band) {
                let crossing = Crossing {
                    lead_id: id.clone(),
                    campaign: campaign.clone(),
                    from,
                    to: *band,
                    score: *score,
                    at_ms: new.scored_at_ms,
                };
                // Kept before it is sent: a watcher that subscribed first misses none. Nobody
                // listening is fine.
                self.recent.add(crossing.clone());
                let _ = self.crossings.send(crossing);
            }
        }
        moved
    }
}

/// Scores are at least 0, where the bits of an `f64` order as the numbers do.
fn key(score: f64, id: &LeadId) -> Key {
    (Reverse(score.to_bits()), id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a score in the default campaign.
    fn apply(index: &ScoreIndex, id: &str, lsn: u64, at: i64, score: f64) {
        let band = Band::of(score, &Default::default());
        let names: Arc<[Arc<str>]> = Arc::from(vec![]);
        let campaigns = [(Arc::from("default"), score, band)];
        let update = Update {
            version: 0,
            config_version: 0,
            lsn,
            scored_at_ms: at,
            scorer_names: &names,
            scorers: &[],
            points: &[],
            campaigns: &campaigns,
            account: None,
        };
        index.apply(&id.into(), update);
    }

    #[test]
    fn ranks_best_first_and_pages_after_a_key() {
        let index = ScoreIndex::new(&[Campaign::new("default", Composition::Points, vec![])]);
        for (id, score) in [("a", 10.0), ("b", 90.0), ("c", 50.0), ("d", 50.0)] {
            apply(&index, id, 1, 0, score);
        }
        let top = index.top("default", None, 3).unwrap();
        assert_eq!(top, [("b".into(), 90.0), ("c".into(), 50.0), ("d".into(), 50.0)]);
        let rest = index.top("default", Some((50.0, &"d".into())), 10).unwrap();
        assert_eq!(rest, [("a".into(), 10.0)]);
        assert!(index.top("spring", None, 3).is_none());
    }

    #[test]
    fn older_scores_never_replace_newer_ones() {
        let index = ScoreIndex::new(&[Campaign::new("default", Composition::Points, vec![])]);
        let id: LeadId = "a".into();
        apply(&index, "a", 5, 100, 80.0);
        apply(&index, "a", 4, 200, 10.0);
        apply(&index, "a", 5, 50, 10.0);
        assert_eq!(index.get("a").unwrap().campaigns[0].1, 80.0);
        apply(&index, "a", 5, 100, 30.0);
        assert_eq!(index.top("default", None, 10).unwrap(), [(id.clone(), 30.0)]);
        index.remove("a");
        assert!(index.top("default", None, 10).unwrap().is_empty());
    }

    #[test]
    fn each_band_change_is_announced_once() {
        let index = ScoreIndex::new(&[Campaign::new("default", Composition::Points, vec![])]);
        let mut crossings = index.subscribe();
        for (at, score) in [(1, 10.0), (2, 20.0), (3, 60.0), (4, 65.0), (5, 20.0)] {
            apply(&index, "a", 1, at, score);
        }
        let mut seen = Vec::new();
        while let Ok(crossing) = crossings.try_recv() {
            seen.push((crossing.from, crossing.to, crossing.score));
        }
        assert_eq!(
            seen,
            [
                (None, Band::Unqualified, 10.0),
                (Some(Band::Unqualified), Band::SalesReady, 60.0),
                (Some(Band::SalesReady), Band::Unqualified, 20.0),
            ]
        );
    }
}
