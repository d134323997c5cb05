//! Who a lead is, as a person reads it: the campaign's display attributes that the lead has, in
//! their configured order, and how to reach it. Lists, alerts and routing decisions carry it, so
//! a row reads "Ada Lovelace · Acme · CTO" rather than an id.

use std::sync::Arc;

use super::Scoring;
use leadscore_store::Store;
use leadscore_store::lead::Lead;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Card {
    /// Display attribute names and values as text, in the campaign's order.
    pub display: Vec<(Arc<str>, String)>,
    pub phone: String,
    pub owner: String,
}

impl Scoring {
    /// A stored lead's card in a campaign; `None` if either is unknown.
    pub fn card(&self, campaign: &str, id: &str) -> Option<Card> {
        let pipeline = self.pipeline();
        let campaign = &pipeline.campaigns[pipeline.campaign(campaign)?];
        self.store.read_lead(id, |lead| card_of(&self.store, &campaign.display, lead))
    }
}

/// A lead's card by these display attributes, for a caller that is reading the lead anyway.
pub fn card_of(store: &Store, display: &[Arc<str>], lead: &Lead) -> Card {
    let display = display
        .iter()
        .filter_map(|name| {
            // A name no lead ever had is not on this one.
            let sym = store.attribute_sym(name)?;
            let at = lead.attributes.binary_search_by_key(&sym, |(s, _)| *s).ok()?;
            Some((name.clone(), lead.attributes[at].1.to_string()))
        })
        .collect();
    let (phone, owner) = lead.profile.as_ref().map(|p| (p.phone.to_string(), p.owner.to_string())).unwrap_or_default();
    Card { display, phone, owner }
}
