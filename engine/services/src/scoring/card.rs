//! Who a lead is, as a person reads it: the campaign's display attributes that the lead has, in
//! their configured order, and how to reach it. Lists, alerts and routing decisions carry it, so
//! a row reads "Ada Lovelace · Acme · CTO" rather than an id.

use std::sync::Arc;

use super::Scoring;
use leadscore_store::lead::Value;

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
        // Names no lead ever had cannot be on this one.
        let wanted: Vec<_> =
            campaign.display.iter().filter_map(|name| Some((self.store.attribute_sym(name)?, name.clone()))).collect();
        self.store.read_lead(id, |lead| {
            let display = wanted
                .into_iter()
                .filter_map(|(sym, name)| {
                    let at = lead.attributes.binary_search_by_key(&sym, |(s, _)| *s).ok()?;
                    Some((name, text(&lead.attributes[at].1)))
                })
                .collect();
            let (phone, owner) =
                lead.profile.as_ref().map(|p| (p.phone.to_string(), p.owner.to_string())).unwrap_or_default();
            Card { display, phone, owner }
        })
    }
}

/// An attribute's value as a person reads it: 919 rather than 919.0.
fn text(value: &Value) -> String {
    match value {
        Value::Text(text) => text.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Flag(flag) => flag.to_string(),
    }
}
