//! What a plugin decides for one event: the same for the plugin that returns
//! it and the host that acts on it.

/// What one plugin decided for one event.
///
/// `S` is how the sink names of a [`Route`] are held: a plugin builds a
/// plain `Vec<String>`; the host shares one `Arc<[String]>` between the
/// verdicts of a result that name the same list, so a plugin cannot
/// multiply a long list per event. The wire between them (`wit/plugin.wit`)
/// carries each distinct list once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<S = Vec<String>> {
    /// Pass the event on unchanged (to the next plugin, then its sinks).
    Keep,
    /// Pass on this JSON object instead of the event. It must be one valid
    /// JSON object; anything else fails the event.
    Replace(Vec<u8>),
    /// Drop the event on purpose. ferry counts drops per plugin; the event
    /// is not delivered and its position counts as done.
    Drop,
    /// Send the event to the named sinks, with new JSON or unchanged. Later
    /// plugins in the chain still see it; the route of the last plugin that
    /// routed wins.
    Route(Route<S>),
    /// This event cannot be handled: ferry writes it to the dead-letter
    /// table with this reason and goes on with the rest of the batch.
    Fail(String),
}

/// Where an event should go next, with optional new content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<S = Vec<String>> {
    /// Names of the sinks that should receive the event, as configured in
    /// ferry.toml (`default` is the sink used when no plugin routes). Must
    /// not be empty; an unknown name fails the event.
    pub sinks: S,
    /// New JSON for the event, or `None` to route it unchanged.
    pub json: Option<Vec<u8>>,
}

impl<S> Outcome<S> {
    /// The new JSON the outcome carries, if any.
    pub fn new_json(&self) -> Option<&[u8]> {
        match self {
            Outcome::Replace(json) => Some(json),
            Outcome::Route(route) => route.json.as_deref(),
            Outcome::Keep | Outcome::Drop | Outcome::Fail(_) => None,
        }
    }
}
