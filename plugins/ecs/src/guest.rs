//! The plugin glue: [`Mapper`] exported to ferry through `ferry-guest`.

use crate::Mapper;
use ferry_guest::prelude::*;

struct EcsPlugin {
    mapper: Mapper,
}

impl Plugin for EcsPlugin {
    fn init(config: &str) -> Result<Self, String> {
        Ok(EcsPlugin { mapper: Mapper::from_config(config)? })
    }

    fn process(&mut self, batch: &[Event]) -> Vec<Outcome> {
        let mut passed = 0;
        let outcomes = batch
            .iter()
            .map(|event| match self.mapper.map(event.id(), event.json) {
                Some(json) => Outcome::Replace(json),
                None => {
                    passed += 1;
                    Outcome::Keep
                }
            })
            .collect();
        count("not_teleport", passed);
        outcomes
    }
}

export_plugin!(EcsPlugin);
