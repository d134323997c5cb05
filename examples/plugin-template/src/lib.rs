//! A scorer plugin template: a lead's `budget` attribute, in thousands, as a 0-100 score.
//! The crate is named after its scorer, so `budget` names it both in `plugins.load` and in
//! a campaign's weights.

use leadscore_plugin_api::{Batch, Factor, Lead, Scorer, Value, export_scorer};

/// Points per thousand of budget.
const SCALE: f64 = if cfg!(feature = "double") { 2.0 } else { 1.0 };

pub struct Budget;

impl Budget {
    /// The lead's score; `budget` is the batch's symbol for the attribute, if any lead has it.
    fn score_of(budget: Option<u32>, lead: &Lead<'_>) -> f64 {
        match lead.attributes().find(|a| Some(a.name()) == budget).map(|a| a.value()) {
            Some(Value::Number(n)) => (SCALE * n / 1000.0).clamp(0.0, 100.0),
            _ => 0.0,
        }
    }

    fn symbol(batch: &Batch<'_>) -> Option<u32> {
        batch.names().position(|name| name == "budget").map(|i| i as u32)
    }
}

impl Scorer for Budget {
    const NAME: &'static str = "budget";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    // The score reads the `budget` attribute alone: events and time do not call it again.
    const ATTRIBUTES_ONLY: bool = true;

    fn create(_config: &str) -> Result<Self, String> {
        Ok(Budget)
    }

    fn score(&self, batch: &Batch<'_>, scores: &mut [f64]) -> Result<(), String> {
        // Names are resolved once per batch, not once per lead.
        let budget = Self::symbol(batch);
        for (lead, score) in batch.leads().zip(scores) {
            *score = Self::score_of(budget, &lead);
        }
        Ok(())
    }

    fn explain(&self, batch: &Batch<'_>, lead: usize) -> Result<Vec<Factor>, String> {
        let points = Self::score_of(Self::symbol(batch), &batch.lead(lead));
        Ok(vec![Factor { feature: "budget".into(), contribution: points, detail: format!("{SCALE} a thousand") }])
    }
}

export_scorer!(Budget);
