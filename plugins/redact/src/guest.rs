//! The plugin glue: [`Redactor`] exported to ferry through `ferry-guest`.
//!
//! Built only for `wasm32`; everything it does is map each event to an
//! outcome and report the count.

use crate::Redactor;
use ferry_guest::prelude::*;

/// The plugin's state: the redactor its config built.
struct Redact {
    redactor: Redactor,
}

impl Plugin for Redact {
    fn init(config: &str) -> Result<Self, String> {
        let redactor = Redactor::from_config(config)?;
        Ok(Redact { redactor })
    }

    fn process(&mut self, batch: &[Event]) -> Vec<Outcome> {
        let before = self.redactor.masked_count();
        let outcomes = batch.iter().map(|event| self.outcome(event)).collect();
        count("redacted_fields", self.redactor.masked_count() - before);
        outcomes
    }
}

impl Redact {
    /// Keep when nothing was masked, Replace with the masked JSON, or Fail
    /// with the reason the event could not be read (ferry dead-letters the
    /// event with its id beside the reason, so the reason need not repeat it).
    fn outcome(&self, event: &Event) -> Outcome {
        match self.redactor.redact(event.json) {
            Ok(None) => Outcome::Keep,
            Ok(Some(json)) => Outcome::Replace(json),
            Err(reason) => Outcome::Fail(reason),
        }
    }
}

export_plugin!(Redact);
