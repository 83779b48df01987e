//! The plugin glue: [`Filter`] exported to ferry through `ferry-guest`.

use crate::Filter;
use ferry_guest::prelude::*;

struct FilterPlugin {
    filter: Filter,
}

impl Plugin for FilterPlugin {
    fn init(config: &str) -> Result<Self, String> {
        Ok(FilterPlugin { filter: Filter::from_config(config)? })
    }

    fn process(&mut self, batch: &[Event]) -> Vec<Outcome> {
        let outcomes: Vec<Outcome> =
            batch.iter().map(|event| if self.filter.keeps("", event.json) { Outcome::Keep } else { Outcome::Drop }).collect();
        count("dropped", outcomes.iter().filter(|outcome| matches!(outcome, Outcome::Drop)).count() as u64);
        outcomes
    }
}

export_plugin!(FilterPlugin);
