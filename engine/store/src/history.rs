//! Each lead's score history: every change of its composite or band per campaign, with when and
//! why, the newest last and at most `bound` of them. Scoring records changes after it rescored
//! (the store does not know how scores are made); snapshots keep them, and erasing a lead
//! removes them with it. They are not logged: a crash loses the changes since the last snapshot.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::intern::Sym;

/// One change of a lead's score in a campaign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreChange {
    pub at_ms: i64,
    pub campaign: CompactString,
    pub score: f64,
    /// The band's rank, lowest 0 (scoring names them).
    pub band: u8,
    pub cause: Cause,
}

/// Why a score changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// A behavioural event: its kind and its id's fingerprint.
    Event { kind: Sym, fingerprint: u64 },
    /// The lead's profile was created or replaced.
    Upsert,
    /// A configuration change made at run time, by the version it made.
    Config { version: u64 },
    /// Time: the sweep (or an explanation) found the score decayed.
    Decay,
    /// The scorer plugins were reloaded (a new model, say).
    Reload,
}

/// Appends `change` unless it repeats the campaign's last score and band, or is decay that
/// moved the score less than `min_decay` within a band; keeps the newest `bound`.
pub fn push(history: &mut Vec<ScoreChange>, change: ScoreChange, bound: usize, min_decay: f64) {
    let last = history.iter().rev().find(|c| c.campaign == change.campaign);
    if let Some(last) = last {
        let moved = (last.score - change.score).abs();
        let same_band = last.band == change.band;
        if same_band && (moved < 1e-9 || (change.cause == Cause::Decay && moved < min_decay)) {
            return;
        }
    }
    if history.len() >= bound {
        history.drain(..=history.len() - bound);
    }
    history.push(change);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(at_ms: i64, score: f64, band: u8, cause: Cause) -> ScoreChange {
        ScoreChange { at_ms, campaign: "default".into(), score, band, cause }
    }

    #[test]
    fn repeats_and_small_decay_are_not_changes_and_the_oldest_go_first() {
        let mut history = Vec::new();
        push(&mut history, change(1, 45.0, 1, Cause::Upsert), 3, 1.0);
        push(&mut history, change(2, 45.0, 1, Cause::Upsert), 3, 1.0);
        push(&mut history, change(3, 44.5, 1, Cause::Decay), 3, 1.0);
        assert_eq!(history.len(), 1);
        // Decay that crosses a band counts, however small.
        push(&mut history, change(4, 49.9, 1, Cause::Decay), 3, 1.0);
        push(&mut history, change(5, 50.1, 2, Cause::Decay), 3, 1.0);
        push(&mut history, change(6, 80.0, 3, Cause::Event { kind: Sym::from_index(0), fingerprint: 7 }), 3, 1.0);
        assert_eq!(history.iter().map(|c| c.at_ms).collect::<Vec<_>>(), [4, 5, 6]);
    }
}
