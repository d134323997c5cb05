//! A digest of the whole state, to check that two replays of one log agree (on another
//! machine, from another snapshot) without comparing the states field by field.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::Store;
use crate::lead::{Lead, LeadId};
use crate::sync::Shards;

impl Store {
    /// SHA-256 of the state in a canonical order: leads, dialer state and score histories by
    /// id, then the sets sorted, the names in the order they were interned, the roster, the
    /// audit trail, the logged configuration and the last sequence number. Equal digests mean
    /// equal states. Meant for a store no one writes to meanwhile.
    pub fn digest(&self) -> [u8; 32] {
        let mut hash = Hasher(Sha256::new());
        let mut ids: Vec<LeadId> = self.state.leads.keys();
        ids.sort_unstable();
        // Three passes over one list: each part hashes as the table of its own it once was.
        let leads = &self.state.leads;
        hash.by_id(leads, &ids, |lead| Some(lead.alone()));
        hash.by_id(leads, &ids, |lead| lead.dial.clone());
        hash.by_id(leads, &ids, |lead| (!lead.history.is_empty()).then(|| lead.history.clone()));
        let mut suppressed: Vec<[u8; 32]> = self.state.suppressed.iter().map(|key| *key).collect();
        suppressed.sort_unstable();
        hash.put(&suppressed);
        let mut do_not_call: Vec<String> = self.state.do_not_call.iter().map(|p| p.to_string()).collect();
        do_not_call.sort_unstable();
        hash.put(&do_not_call);
        hash.put(&self.state.attribute_names.names());
        hash.put(&self.state.event_kinds.names());
        hash.put(&self.roster(|roster| roster.rows.iter().map(|row| row.agent.clone()).collect::<Vec<_>>()));
        hash.put(&self.state.audit.lock().clone());
        hash.put(&self.logged_config());
        hash.put(&self.writer.lock().last_lsn);
        hash.0.finalize().into()
    }
}

struct Hasher(Sha256);

impl Hasher {
    fn put(&mut self, item: &impl Serialize) {
        self.0.update(postcard::to_stdvec(item).expect("the state serializes"));
    }

    /// What `part` takes of each of these leads, with its id, in the order given; leads it gives
    /// nothing for are skipped. The shard is released before the part is hashed.
    fn by_id<T: Serialize>(&mut self, leads: &Shards<Lead>, ids: &[LeadId], part: impl Fn(&Lead) -> Option<T>) {
        for id in ids {
            if let Some(value) = leads.get(id).and_then(|lead| part(&lead)) {
                self.put(&(id, value));
            }
        }
    }
}
