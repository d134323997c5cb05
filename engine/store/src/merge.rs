//! A re-import that merges: an imported lead meets the stored lead of its id, field by field.
//! What the source does not have, or (unless told) leaves blank, the stored lead keeps; and
//! consent is only tightened unless the caller allows more, so a CRM re-sync without its
//! consent columns never makes an opted-out person callable.

use std::collections::HashSet;

use compact_str::CompactString;

use super::StoreError;
use super::intern::Interner;
use super::lead::{Consent, Lead};
use super::mutation::LeadInput;

/// The lead fields a source may have beside its attributes, as `fields` names them.
pub const TIME_ZONE: &str = "time_zone";
pub const PHONE: &str = "phone";
pub const EMAIL: &str = "email";
pub const DO_NOT_CALL: &str = "consent.do_not_call";
pub const EMAIL_OPT_OUT: &str = "consent.email_opt_out";
pub const PHONE_CONSENT: &str = "consent.phone_consent";

/// How imported leads meet stored ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Merge {
    /// The fields the source has: attribute names and the names above.
    pub fields: HashSet<CompactString>,
    /// A listed field a row leaves blank is cleared, rather than kept.
    pub blank_clears: bool,
    /// Consent may be loosened, not only tightened.
    pub allow_consent_changes: bool,
}

impl Merge {
    /// `lead` as it stores over `stored`: every field the source lacks, or this row (`blank`)
    /// leaves blank unless blanks clear, kept from `stored`; or why not (consent it would
    /// loosen), naming the field under `path`.
    pub fn apply(
        &self,
        mut lead: LeadInput,
        blank: &[CompactString],
        stored: &Lead,
        names: &Interner,
        path: &str,
    ) -> Result<LeadInput, StoreError> {
        let keeps =
            |field: &str| !self.fields.contains(field) || (!self.blank_clears && blank.iter().any(|b| b == field));
        for (sym, value) in stored.attributes.iter() {
            let name = names.resolve(*sym);
            if keeps(&name) && !lead.attributes.iter().any(|(n, _)| **n == *name) {
                lead.attributes.push((CompactString::from(&*name), value.clone()));
            }
        }
        let profile = stored.profile().cloned().unwrap_or_default();
        if keeps(TIME_ZONE) {
            lead.time_zone = stored.time_zone;
        }
        if keeps(PHONE) {
            lead.phone = profile.phone;
        }
        if keeps(EMAIL) {
            lead.email = profile.email;
        }
        // Not fields of an import: always kept.
        (lead.owner, lead.campaigns) = (profile.owner, profile.campaigns);
        lead.consent.objected = stored.consent.objected;
        lead.consent = self.consent(lead.consent, stored.consent, keeps, path)?;
        Ok(lead)
    }

    fn consent(
        &self,
        mut new: Consent,
        stored: Consent,
        keeps: impl Fn(&str) -> bool,
        path: &str,
    ) -> Result<Consent, StoreError> {
        // Each flag with the value that forbids more: do not call, opted out, no consent.
        let flags: [(&str, &mut bool, bool, bool); 3] = [
            (DO_NOT_CALL, &mut new.do_not_call, stored.do_not_call, true),
            (EMAIL_OPT_OUT, &mut new.email_opt_out, stored.email_opt_out, true),
            (PHONE_CONSENT, &mut new.phone_consent, stored.phone_consent, false),
        ];
        for (field, value, was, strict) in flags {
            if keeps(field) {
                *value = was;
            } else if was == strict && *value != strict && !self.allow_consent_changes {
                return Err(StoreError::ConsentLoosened {
                    field: format!("{path}.{field}"),
                    stored: was,
                    sent: *value,
                });
            }
        }
        Ok(new)
    }
}
