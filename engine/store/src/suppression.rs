//! Erased people stay erased: the salted hashes of an erased lead's id, phone number and
//! e-mail address refuse any upsert that would bring them back; and the other checks an upsert
//! needs against what is stored.

use compact_str::CompactString;
use sha2::{Digest, Sha256};

use crate::audit::{AuditKind, Subject};
use crate::mutation::{LeadInput, Mutation};
use crate::{Store, StoreError, limit};

impl Store {
    /// The checks an upsert needs beyond the shape of its input: erased people stay erased,
    /// the name tables have room, and, unless `may_object`, no objection changes (a new lead's
    /// is none). `path` names the lead at an index in errors. Returns the audit entries, by
    /// `actor`, of the objections the upsert changes: the stored lead is read once for both.
    pub(crate) fn check_upsert(
        &self,
        leads: &[LeadInput],
        may_object: bool,
        actor: &str,
        path: impl Fn(usize) -> String,
    ) -> Result<Vec<Mutation>, StoreError> {
        let mut objections = Vec::new();
        for (index, lead) in leads.iter().enumerate() {
            let objected = self.read_lead(&lead.id, |stored| stored.consent.objected).unwrap_or(false);
            if objected != lead.consent.objected {
                if !may_object {
                    return Err(StoreError::ObjectionLocked { field: format!("{}.consent.objected", path(index)) });
                }
                let detail = if lead.consent.objected { "objected" } else { "objection withdrawn" };
                objections.push(self.audit(actor, AuditKind::Objection, Subject::Lead(lead.id.clone()), detail.into()));
            }
            for (field, key) in self.suppression_keys(&lead.id, &lead.phone, &lead.email) {
                if self.state.suppressed.contains(&key) {
                    return Err(StoreError::Suppressed { field: format!("{}.{field}", path(index)) });
                }
            }
        }
        let names = leads.iter().flat_map(|l| l.attributes.iter().map(|(k, _)| k.as_str()));
        self.state.attribute_names.room_for(names).map_err(|full| limit("leads[].attributes", full))?;
        Ok(objections)
    }

    /// Salted hashes of the things that identify a person: the id, the phone number and the
    /// e-mail address (case-folded), each with the field it came from.
    pub(crate) fn suppression_keys(&self, id: &str, phone: &str, email: &str) -> Vec<(&'static str, [u8; 32])> {
        let mut keys = vec![("id", self.suppression_key("id", id))];
        if !phone.is_empty() {
            keys.push(("phone", self.suppression_key("phone", phone)));
        }
        if !email.is_empty() {
            keys.push(("email", self.suppression_key("email", &email.to_lowercase())));
        }
        keys
    }

    /// The keys erasing this lead would keep (its id, phone and e-mail, salted and hashed), for
    /// a cluster's other shards to keep too; `None` if there is no such lead.
    pub fn erasure_keys(&self, id: &str) -> Option<Vec<[u8; 32]>> {
        let profile = self.read_lead(id, |lead| lead.profile().cloned().unwrap_or_default())?;
        Some(self.suppression_keys(id, &profile.phone, &profile.email).into_iter().map(|(_, key)| key).collect())
    }

    /// Keeps marks that came from another shard of the cluster (see `Mutation::Marks`).
    pub fn mark(&self, do_not_call: Vec<CompactString>, suppression_keys: Vec<[u8; 32]>) -> Result<(), StoreError> {
        if do_not_call.is_empty() && suppression_keys.is_empty() {
            return Ok(());
        }
        let writer = self.writer.lock();
        self.commit(writer, &Mutation::Marks { do_not_call, suppression_keys })
    }

    /// Whether a lead of this id was erased.
    pub(crate) fn erased(&self, id: &str) -> bool {
        self.state.suppressed.contains(&self.suppression_key("id", id))
    }

    pub(crate) fn suppression_key(&self, tag: &str, value: &str) -> [u8; 32] {
        Sha256::new().chain_update(self.salt).chain_update(tag).chain_update([0]).chain_update(value).finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use crate::StoreError;
    use crate::testing::{lead, open};

    #[test]
    fn marks_from_another_shard_refuse_the_erased_and_list_the_number_after_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (erased, listed) = (lead("erased", 1.0), lead("listed", 1.0));
        assert!(store.erasure_keys("erased").is_none(), "no keys for a lead not stored");
        store.upsert_leads(vec![erased.clone()]).unwrap();
        let keys = store.erasure_keys("erased").unwrap();
        assert_eq!(keys.len(), 2, "its id and its phone");
        // As another shard's erasure would send them: the lead itself stays until erased here.
        store.mark(vec![listed.phone.clone()], keys).unwrap();
        let digest = store.digest();
        drop(store);

        let store = open(dir.path());
        assert_eq!(store.digest(), digest);
        assert!(store.on_do_not_call_list(&listed.phone));
        let refused = store.upsert_leads(vec![lead("erased", 2.0)]).unwrap_err();
        assert!(matches!(refused, StoreError::Suppressed { .. }), "{refused}");
        let mut same_phone = lead("another-record", 1.0);
        same_phone.phone = erased.phone.clone();
        let refused = store.upsert_leads(vec![same_phone]).unwrap_err();
        assert!(matches!(refused, StoreError::Suppressed { .. }), "{refused}");
    }
}
