//! Erased people stay erased: the salted hashes of an erased lead's id, phone number and
//! e-mail address refuse any upsert that would bring them back; and the other checks an upsert
//! needs against what is stored.

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

    /// Whether a lead of this id was erased.
    pub(crate) fn erased(&self, id: &str) -> bool {
        self.state.suppressed.contains(&self.suppression_key("id", id))
    }

    pub(crate) fn suppression_key(&self, tag: &str, value: &str) -> [u8; 32] {
        Sha256::new().chain_update(self.salt).chain_update(tag).chain_update([0]).chain_update(value).finalize().into()
    }
}
