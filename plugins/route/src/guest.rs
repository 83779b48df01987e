//! The plugin glue: [`Router`] exported to ferry through `ferry-guest`.

use crate::Router;
use ferry_guest::prelude::*;

struct RoutePlugin {
    router: Router,
}

impl Plugin for RoutePlugin {
    fn init(config: &str) -> Result<Self, String> {
        Ok(RoutePlugin { router: Router::from_config(config)? })
    }

    fn process(&mut self, batch: &[Event]) -> Vec<Outcome> {
        let mut unrouted = 0;
        let outcomes = batch
            .iter()
            .map(|event| match self.router.sinks("", event.json) {
                Some(sinks) => Outcome::route_to(sinks),
                None => {
                    unrouted += 1;
                    Outcome::Keep
                }
            })
            .collect();
        count("unrouted", unrouted);
        outcomes
    }
}

export_plugin!(RoutePlugin);
