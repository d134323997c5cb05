//! The latest band crossings of each campaign, kept so that an alert list opened (or reloaded)
//! late starts with what just happened. The index keeps each crossing here as it sends it, so
//! a watcher that subscribes and then reads these misses none. Kept in memory only.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::index::Crossing;
use leadscore_store::sync::{Mutex, Rank};

/// Crossings kept per campaign.
pub const RECENT_CROSSINGS: usize = 1000;

#[derive(Debug)]
pub struct Recent {
    by_campaign: Mutex<HashMap<Arc<str>, VecDeque<Crossing>>>,
}

impl Default for Recent {
    fn default() -> Self {
        Self { by_campaign: Mutex::new(Rank::RecentCrossings, HashMap::new()) }
    }
}

impl Recent {
    pub fn add(&self, crossing: Crossing) {
        let mut by_campaign = self.by_campaign.lock();
        let kept = by_campaign.entry(crossing.campaign.clone()).or_default();
        if kept.len() == RECENT_CROSSINGS {
            kept.pop_front();
        }
        kept.push_back(crossing);
    }

    /// The campaign's latest `count` crossings that `wanted` keeps, oldest first.
    pub fn latest(&self, campaign: &str, count: usize, wanted: impl Fn(&Crossing) -> bool) -> Vec<Crossing> {
        let by_campaign = self.by_campaign.lock();
        let Some(kept) = by_campaign.get(campaign) else { return Vec::new() };
        let mut latest: Vec<Crossing> = kept.iter().rev().filter(|c| wanted(c)).take(count).cloned().collect();
        latest.reverse();
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::pipeline::Band;

    fn crossing(lead: &str, campaign: &str, to: Band, at_ms: i64) -> Crossing {
        Crossing { lead_id: lead.into(), campaign: campaign.into(), from: None, to, score: 0.0, at_ms }
    }

    #[test]
    fn the_latest_of_a_campaign_are_kept_oldest_first_and_filtered() {
        let recent = Recent::default();
        for at in 0..RECENT_CROSSINGS as i64 + 5 {
            let band = if at % 2 == 0 { Band::Hot } else { Band::Warm };
            recent.add(crossing(&format!("l{at}"), "default", band, at));
        }
        recent.add(crossing("other", "other", Band::Hot, 0));
        let at = |crossings: Vec<Crossing>| crossings.iter().map(|c| c.at_ms).collect::<Vec<_>>();
        let last = RECENT_CROSSINGS as i64 + 4;
        assert_eq!(at(recent.latest("default", 3, |_| true)), [last - 2, last - 1, last]);
        assert_eq!(at(recent.latest("default", 2, |c| c.to == Band::Warm)), [last - 3, last - 1]);
        // At most the kept number, the oldest gone.
        let all = recent.latest("default", usize::MAX, |_| true);
        assert_eq!((all.len(), all[0].at_ms), (RECENT_CROSSINGS, 5));
        assert_eq!(at(recent.latest("other", 5, |_| true)), [0]);
        assert!(recent.latest("nope", 5, |_| true).is_empty());
    }
}
