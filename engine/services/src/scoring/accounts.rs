//! Account scores: per campaign, the leads that name one account (their `account` attribute,
//! e.g. the company's domain) and a roll-up of their scores — the best, the sum or the mean of
//! the best few — plus, if weighted, the account's fit; and every account ranked best first.
//!
//! A book is changed only by the score index, under the entry lock of the lead that moved, so
//! accounts follow their leads' scores in the same order.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use compact_str::CompactString;

use super::pipeline::Band;
use leadscore_config::{AccountConfig, BandsConfig, Rollup};
use leadscore_store::lead::LeadId;

/// The lead attribute that names a lead's account.
pub const ACCOUNT_ATTRIBUTE: &str = "account";

/// Best first, then by name (or id).
type Key<T> = (Reverse<u64>, T);

/// One lead's place in an account in one campaign: its score, and its fit in the campaign's
/// composition (`NaN` when no fit scorer is in service).
#[derive(Clone, Copy, Debug)]
pub struct Place {
    pub score: f64,
    pub fit: f64,
}

/// Equal when nothing would move: a missing fit (`NaN`) equals a missing fit.
impl PartialEq for Place {
    fn eq(&self, other: &Self) -> bool {
        self.score == other.score && self.fit.to_bits() == other.fit.to_bits()
    }
}

/// An account's score in a campaign, with its best leads.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountScore {
    pub account: CompactString,
    pub score: f64,
    /// The band the campaign's thresholds give the account's score.
    pub band: Band,
    pub leads: usize,
    /// Best first, with their scores and bands.
    pub top_leads: Vec<(LeadId, f64, Band)>,
}

#[derive(Debug, Default)]
struct Account {
    leads: BTreeSet<Key<LeadId>>,
    /// Its leads by fit, when the roll-up weighs fit.
    fits: BTreeSet<Key<LeadId>>,
    sum: f64,
    score: f64,
}

/// One campaign's accounts.
#[derive(Debug)]
pub struct Book {
    rule: AccountConfig,
    bands: BandsConfig,
    accounts: HashMap<CompactString, Account>,
    ranked: BTreeSet<Key<CompactString>>,
    /// Where each lead is, as it was entered: what leaving removes.
    places: HashMap<LeadId, (CompactString, Place)>,
    /// On a cluster, what the other shards' leads give each account (`set_elsewhere`): an
    /// account's score is made from its leads here and that, so `account.score` reads the
    /// whole account. Its lead count and best leads stay this book's own.
    elsewhere: HashMap<CompactString, AccountShare>,
}

impl Book {
    pub fn new(rule: AccountConfig, bands: BandsConfig) -> Self {
        let (accounts, places, elsewhere) = (HashMap::new(), HashMap::new(), HashMap::new());
        Self { rule, bands, accounts, ranked: BTreeSet::new(), places, elsewhere }
    }

    /// Takes a new roll-up rule and bands; every account's score is made again from its leads.
    pub fn set_rule(&mut self, rule: AccountConfig, bands: BandsConfig) {
        self.bands = bands;
        if rule == self.rule {
            return;
        }
        self.rule = rule;
        let names: Vec<CompactString> = self.accounts.keys().cloned().collect();
        for name in names {
            self.settle(&name);
        }
    }

    /// Moves a lead to its new place (`None`: in no account); whether an account's score
    /// changed.
    pub fn shift(&mut self, id: &LeadId, new: Option<(&str, Place)>) -> bool {
        let old = self.places.get(id);
        if old.map(|(name, place)| (name.as_str(), *place)) == new {
            return false;
        }
        let mut moved = false;
        if let Some((name, place)) = self.places.remove(id)
            && let Some(account) = self.accounts.get_mut(&name)
        {
            account.leads.remove(&key(place.score, id));
            account.fits.remove(&key(place.fit.max(0.0), id));
            account.sum -= place.score;
            moved |= self.settle(&name);
        }
        if let Some((name, place)) = new {
            let account = self.accounts.entry(name.into()).or_default();
            account.leads.insert(key(place.score, id));
            if !place.fit.is_nan() {
                // A negative fit counts as none: the ranking's keys order only numbers >= 0.
                account.fits.insert(key(place.fit.max(0.0), id));
            }
            account.sum += place.score;
            self.places.insert(id.clone(), (name.into(), place));
            moved |= self.settle(name);
        }
        moved
    }

    /// Makes an account's score again from its leads and moves it in the ranking (an account
    /// left with no lead goes); whether its score changed.
    fn settle(&mut self, name: &str) -> bool {
        let Some(account) = self.accounts.get_mut(name) else { return false };
        let before = account.score;
        self.ranked.remove(&key(before, &CompactString::from(name)));
        if account.leads.is_empty() {
            self.accounts.remove(name);
            return true;
        }
        let scores = account.leads.iter().map(|(Reverse(bits), _)| f64::from_bits(*bits));
        let fit = account.fits.first().map(|(Reverse(bits), _)| f64::from_bits(*bits));
        account.score = match self.elsewhere.get(name) {
            None => rolled_up(&self.rule, scores, account.leads.len(), account.sum, fit),
            Some(other) => {
                let depth = share_depth(&self.rule, 0);
                let mut best: Vec<f64> = scores.take(depth).chain(other.best.iter().map(|(_, s)| *s)).collect();
                best.sort_by(|a, b| b.total_cmp(a));
                let (leads, sum) = (account.leads.len() + other.leads, account.sum + other.sum);
                rolled_up(&self.rule, best.into_iter(), leads, sum, best_fit(fit, other.fit))
            }
        };
        self.ranked.insert(key(account.score, &CompactString::from(name)));
        account.score != before
    }

    /// An account's score, its number of leads and up to `leads` of its best.
    pub fn get(&self, name: &str, leads: usize) -> Option<AccountScore> {
        let account = self.accounts.get(name)?;
        let top_leads = account.leads.iter().take(leads);
        Some(AccountScore {
            account: name.into(),
            score: account.score,
            band: Band::of(account.score, &self.bands),
            leads: account.leads.len(),
            top_leads: top_leads
                .map(|(Reverse(bits), id)| {
                    let score = f64::from_bits(*bits);
                    (id.clone(), score, Band::of(score, &self.bands))
                })
                .collect(),
        })
    }

    pub fn score(&self, name: &str) -> Option<f64> {
        self.accounts.get(name).map(|account| account.score)
    }

    /// Up to `limit` accounts, best first, each with up to `leads` of its best leads.
    pub fn top(&self, limit: usize, leads: usize) -> Vec<AccountScore> {
        self.ranked.iter().take(limit).filter_map(|(_, name)| self.get(name, leads)).collect()
    }

    /// How many accounts have leads.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Every lead of an account.
    pub fn leads(&self, name: &str) -> Vec<LeadId> {
        self.accounts.get(name).map_or_else(Vec::new, |a| a.leads.iter().map(|(_, id)| id.clone()).collect())
    }

    /// Takes what the other shards' leads give each account; the accounts here whose score
    /// moved.
    pub fn set_elsewhere(&mut self, elsewhere: HashMap<CompactString, AccountShare>) -> Vec<CompactString> {
        let before = std::mem::replace(&mut self.elsewhere, elsewhere);
        let touched: Vec<CompactString> =
            self.accounts.keys().filter(|name| before.get(*name) != self.elsewhere.get(*name)).cloned().collect();
        touched.into_iter().filter(|name| self.settle(name)).collect()
    }

    /// Every account's share of this book's leads (or only `only`'s), each with up to `best` of
    /// its best.
    pub fn shares(&self, best: usize, only: Option<&str>) -> Vec<AccountShare> {
        let share = |(name, account): (&CompactString, &Account)| AccountShare {
            account: name.clone(),
            leads: account.leads.len(),
            sum: account.sum,
            best: account
                .leads
                .iter()
                .take(best)
                .map(|(Reverse(bits), id)| (id.clone(), f64::from_bits(*bits)))
                .collect(),
            fit: account.fits.first().map(|(Reverse(bits), _)| f64::from_bits(*bits)),
        };
        match only {
            Some(name) => self.accounts.get_key_value(name).map(share).into_iter().collect(),
            None => self.accounts.iter().map(share).collect(),
        }
    }
}

/// An account's score from its leads': `scores` are the best of them, best first, at least as
/// many as the roll-up reads; `fit` is the best fit among them, if any has one.
fn rolled_up(
    rule: &AccountConfig,
    mut scores: impl Iterator<Item = f64>,
    leads: usize,
    sum: f64,
    fit: Option<f64>,
) -> f64 {
    let rollup = match rule.rollup {
        Rollup::Max => scores.next().unwrap_or(0.0),
        // A running sum: recomputed whole, each change would cost the account's size.
        Rollup::Sum => sum.max(0.0),
        Rollup::TopMean => {
            let top = leads.min(rule.top);
            scores.take(top).sum::<f64>() / top as f64
        }
    };
    (rollup + rule.fit * fit.unwrap_or(0.0)).max(0.0)
}

/// What one part of the leads (a shard's) gives an account: enough, with every other part's,
/// to make its score as a book over all of them does.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountShare {
    pub account: CompactString,
    pub leads: usize,
    pub sum: f64,
    /// Its best leads in the part, best first.
    pub best: Vec<(LeadId, f64)>,
    /// The best fit among them (never below 0), if any has one.
    pub fit: Option<f64>,
}

/// Parts' shares added up by account, each keeping its `depth` best leads, best first.
pub fn add_up(shares: impl IntoIterator<Item = AccountShare>, depth: usize) -> HashMap<CompactString, AccountShare> {
    let mut whole: HashMap<CompactString, AccountShare> = HashMap::new();
    for share in shares {
        match whole.get_mut(&share.account) {
            Some(known) => known.absorb(&share, depth),
            None => {
                whole.insert(share.account.clone(), share);
            }
        }
    }
    for account in whole.values_mut() {
        account.best.sort_by(best_first);
        account.best.truncate(depth);
    }
    whole
}

impl AccountShare {
    /// Adds another part's share of the same account, keeping the `depth` best leads (in no
    /// order until `sort_by(best_first)`: each absorb would sort otherwise).
    fn absorb(&mut self, other: &AccountShare, depth: usize) {
        self.leads += other.leads;
        self.sum += other.sum;
        self.best.extend(other.best.iter().cloned());
        if self.best.len() > 2 * depth.max(1) {
            self.best.sort_by(best_first);
            self.best.truncate(depth);
        }
        self.fit = best_fit(self.fit, other.fit);
    }
}

/// Best score first, then by lead id.
fn best_first(a: &(LeadId, f64), b: &(LeadId, f64)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0))
}

fn best_fit(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// How many of each account's best leads a share needs for its roll-up and `leads` to list.
pub fn share_depth(rule: &AccountConfig, leads: usize) -> usize {
    leads.max(if rule.rollup == Rollup::TopMean { rule.top } else { 1 })
}

/// The best `limit` accounts made from every part's shares (each with `share_depth` of its
/// best), each with up to `leads` of its best leads: what `Book::top` over all the parts'
/// leads gives, to a rounding of the sums.
pub fn top_of_shares(
    rule: &AccountConfig,
    bands: &BandsConfig,
    shares: impl IntoIterator<Item = AccountShare>,
    limit: usize,
    leads: usize,
) -> Vec<AccountScore> {
    let whole = add_up(shares, share_depth(rule, leads));
    let mut accounts: Vec<AccountScore> = whole
        .into_values()
        .map(|account| {
            let scores = account.best.iter().map(|(_, score)| *score);
            let score = rolled_up(rule, scores, account.leads, account.sum, account.fit);
            let top_leads = account.best.into_iter().take(leads);
            AccountScore {
                account: account.account,
                score,
                band: Band::of(score, bands),
                leads: account.leads,
                top_leads: top_leads.map(|(id, score)| (id, score, Band::of(score, bands))).collect(),
            }
        })
        .collect();
    accounts.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.account.cmp(&b.account)));
    accounts.truncate(limit);
    accounts
}

/// Scores are at least 0, where the bits of an `f64` order as the numbers do.
fn key<T: Clone>(score: f64, id: &T) -> Key<T> {
    (Reverse(score.to_bits()), id.clone())
}

/// An account name as a lead gives it: trimmed, and in lower case, since domains are.
pub fn normalize(name: &str) -> Option<CompactString> {
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_lowercase().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(rollup: Rollup, top: usize, fit: f64) -> AccountConfig {
        AccountConfig { rollup, top, fit }
    }

    fn at(score: f64) -> Place {
        Place { score, fit: f64::NAN }
    }

    #[test]
    fn roll_ups_follow_their_leads() {
        let mut book = Book::new(rule(Rollup::Max, 2, 0.0), BandsConfig::default());
        let (a, b, c) = (LeadId::from("a"), LeadId::from("b"), LeadId::from("c"));
        book.shift(&a, Some(("acme.com", at(30.0))));
        book.shift(&b, Some(("acme.com", at(60.0))));
        book.shift(&c, Some(("acme.com", at(15.0))));
        assert_eq!(book.score("acme.com"), Some(60.0));
        book.set_rule(rule(Rollup::Sum, 2, 0.0), BandsConfig::default());
        assert_eq!(book.score("acme.com"), Some(105.0));
        book.set_rule(rule(Rollup::TopMean, 2, 0.0), BandsConfig::default());
        assert_eq!(book.score("acme.com"), Some(45.0));
        // b moves to another account; a rises.
        book.shift(&b, Some(("globex.com", at(60.0))));
        book.shift(&a, Some(("acme.com", at(70.0))));
        assert_eq!(book.score("acme.com"), Some(42.5));
        assert_eq!(
            book.top(10, 1).iter().map(|s| (s.account.as_str(), s.score)).collect::<Vec<_>>(),
            [("acme.com", 42.5), ("globex.com", 60.0)].into_iter().rev().collect::<Vec<_>>()
        );
        // The last lead leaving takes the account with it.
        assert!(book.shift(&b, None));
        assert!(!book.shift(&b, None));
        assert_eq!(book.score("globex.com"), None);
        assert_eq!(book.top(10, 0).len(), 1);
    }

    #[test]
    fn the_best_fit_among_the_leads_is_the_accounts_fit() {
        let mut book = Book::new(rule(Rollup::Max, 3, 0.5), BandsConfig::default());
        let (a, b) = (LeadId::from("a"), LeadId::from("b"));
        book.shift(&a, Some(("acme.com", Place { score: 40.0, fit: 10.0 })));
        book.shift(&b, Some(("acme.com", Place { score: 20.0, fit: 30.0 })));
        assert_eq!(book.score("acme.com"), Some(40.0 + 0.5 * 30.0));
        let got = book.get("acme.com", 5).unwrap();
        assert_eq!(got.band, Band::SalesReady);
        assert_eq!(got.leads, 2);
        assert_eq!(got.top_leads, [(a, 40.0, Band::Warm), (b, 20.0, Band::Unqualified)]);
    }

    /// Leads spread over three books, as over shards: the accounts made from the books' shares
    /// are those of one book holding every lead, under every roll-up.
    #[test]
    fn accounts_made_from_shares_are_those_of_one_book_over_every_lead() {
        let leads: Vec<(LeadId, &str, Place)> = (0..60)
            .map(|i| {
                let account = ["acme.com", "globex.com", "initech.com", "umbrella.com"][i * 7 % 4];
                let place =
                    Place { score: (i * 37 % 101) as f64, fit: if i % 5 == 0 { f64::NAN } else { (i % 13) as f64 } };
                (LeadId::from(format!("lead-{i:02}").as_str()), account, place)
            })
            .collect();
        for rollup in [Rollup::Max, Rollup::Sum, Rollup::TopMean] {
            let rule = rule(rollup, 4, 0.5);
            let mut whole = Book::new(rule, BandsConfig::default());
            let mut parts: Vec<Book> = (0..3).map(|_| Book::new(rule, BandsConfig::default())).collect();
            for (i, (id, account, place)) in leads.iter().enumerate() {
                whole.shift(id, Some((account, *place)));
                parts[i % 3].shift(id, Some((account, *place)));
            }
            for (limit, listed) in [(10, 3), (2, 0), (4, 7)] {
                let depth = share_depth(&rule, listed);
                let shares = parts.iter().flat_map(|part| part.shares(depth, None));
                let merged = top_of_shares(&rule, &BandsConfig::default(), shares, limit, listed);
                assert_eq!(merged, whole.top(limit, listed), "{rollup:?}, {limit} accounts with {listed} leads");
            }
            let one = parts.iter().flat_map(|part| part.shares(share_depth(&rule, 0), Some("globex.com")));
            let one = top_of_shares(&rule, &BandsConfig::default(), one, 10, 0);
            assert_eq!(one, [whole.get("globex.com", 0).unwrap()], "{rollup:?}, one account");
        }
    }

    /// Leads spread over three books, each given the other two's shares: every account's score
    /// in each book is the one a book holding every lead gives it, and follows a lead's move.
    #[test]
    fn a_book_given_the_other_books_shares_scores_each_account_whole() {
        let leads: Vec<(LeadId, &str, Place)> = (0..45)
            .map(|i| {
                let account = ["acme.com", "globex.com", "initech.com"][i / 3 % 3];
                let place =
                    Place { score: (i * 29 % 97) as f64, fit: if i % 4 == 0 { f64::NAN } else { (i % 11) as f64 } };
                (LeadId::from(format!("lead-{i:02}").as_str()), account, place)
            })
            .collect();
        for rollup in [Rollup::Max, Rollup::Sum, Rollup::TopMean] {
            let rule = rule(rollup, 3, 0.5);
            let mut whole = Book::new(rule, BandsConfig::default());
            let mut parts: Vec<Book> = (0..3).map(|_| Book::new(rule, BandsConfig::default())).collect();
            for (i, (id, account, place)) in leads.iter().enumerate() {
                whole.shift(id, Some((account, *place)));
                parts[i % 3].shift(id, Some((account, *place)));
            }
            let give_others = |parts: &mut Vec<Book>| -> Vec<Vec<CompactString>> {
                let depth = share_depth(&rule, 0);
                let shares: Vec<Vec<AccountShare>> = parts.iter().map(|p| p.shares(depth, None)).collect();
                let mut moved = Vec::new();
                for (i, part) in parts.iter_mut().enumerate() {
                    let theirs =
                        shares.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, s)| s.iter().cloned());
                    let mut names = part.set_elsewhere(add_up(theirs, depth));
                    names.sort();
                    moved.push(names);
                }
                moved
            };
            let every = ["acme.com", "globex.com", "initech.com"];
            let differed: Vec<Vec<&str>> = (parts.iter())
                .map(|part| every.into_iter().filter(|a| part.score(a) != whole.score(a)).collect())
                .collect();
            assert!(differed.iter().any(|d| !d.is_empty()), "{rollup:?}: a book alone scores some account otherwise");
            let moved = give_others(&mut parts);
            for (i, part) in parts.iter().enumerate() {
                for account in every {
                    assert_eq!(part.score(account), whole.score(account), "{rollup:?}, {account} in book {i}");
                }
                assert_eq!(moved[i], differed[i], "{rollup:?}: the accounts whose score moved in book {i}");
            }
            assert!(give_others(&mut parts).iter().all(Vec::is_empty), "{rollup:?}: the same shares move nothing");
            // The best lead rises: its own book follows at once, the others on their next shares.
            let (id, account, place) = &leads[0];
            let risen = Place { score: 500.0, ..*place };
            whole.shift(id, Some((account, risen)));
            parts[0].shift(id, Some((account, risen)));
            assert_eq!(parts[0].score(account), whole.score(account), "{rollup:?}, at once in the lead's book");
            give_others(&mut parts);
            for part in &parts {
                assert_eq!(part.score(account), whole.score(account), "{rollup:?}, after the next shares");
            }
        }
    }

    #[test]
    fn account_names_are_trimmed_and_lower_case() {
        assert_eq!(normalize("  Acme.COM ").as_deref(), Some("acme.com"));
        assert_eq!(normalize("   "), None);
    }
}
