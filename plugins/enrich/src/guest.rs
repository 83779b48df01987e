//! The plugin glue: [`Enricher`] exported to ferry through `ferry-guest`.

use crate::Enricher;
use ferry_guest::prelude::*;

struct EnrichPlugin {
    enricher: Enricher,
}

impl Plugin for EnrichPlugin {
    fn init(config: &str) -> Result<Self, String> {
        Ok(EnrichPlugin { enricher: Enricher::from_config(config)? })
    }

    fn process(&mut self, batch: &[Event]) -> Vec<Outcome> {
        let mut enriched = 0;
        let outcomes = batch
            .iter()
            .map(|event| match self.enricher.enrich("", event.json) {
                Ok(None) => Outcome::Keep,
                Ok(Some(json)) => {
                    enriched += 1;
                    Outcome::Replace(json)
                }
                Err(reason) => Outcome::Fail(reason),
            })
            .collect();
        count("enriched", enriched);
        outcomes
    }
}

export_plugin!(EnrichPlugin);
