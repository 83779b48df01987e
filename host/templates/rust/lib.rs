//! {{name}}: a ferry plugin.
//!
//! Drops the event types listed in its config and marks every other event
//! with `"processed_by": "{{name}}"`. Change `process` to do your own work.
//!
//! Config (the plugin's `[config]` table in ferry.toml, handed to `init` as
//! JSON): `drop = ["session.data", "user.login"]`.

use ferry_guest::prelude::*;
use ferry_guest::serde_json::{self, Value};

/// The plugin's state, built by `init` and kept between batches.
pub struct {{type_name}} {
    drop: Vec<String>,
}

impl Plugin for {{type_name}} {
    fn init(config: &str) -> Result<Self, String> {
        let config: Value = serde_json::from_str(config).map_err(|err| format!("config is not JSON: {err}"))?;
        let drop = match config.get("drop") {
            None => Vec::new(),
            Some(Value::Array(types)) => types
                .iter()
                .map(|t| t.as_str().map(str::to_owned).ok_or("`drop` must be a list of event types"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("`drop` must be a list of event types".into()),
        };
        Ok({{type_name}} { drop })
    }

    fn process(&mut self, batch: &[Event]) -> Vec<Outcome> {
        let outcomes: Vec<Outcome> = batch.iter().map(|event| self.one(event)).collect();
        count("dropped", outcomes.iter().filter(|o| matches!(o, Outcome::Drop)).count() as u64);
        outcomes
    }
}

impl {{type_name}} {
    fn one(&self, event: &Event) -> Outcome {
        if self.drop.iter().any(|t| t == event.event_type()) {
            return Outcome::Drop;
        }
        match event.parse_object() {
            Ok(mut object) => {
                object.insert("processed_by".into(), Value::from("{{name}}"));
                Outcome::replace_json(&Value::Object(object))
            }
            Err(reason) => Outcome::Fail(reason),
        }
    }
}

export_plugin!({{type_name}});

#[cfg(test)]
mod tests {
    use super::*;

    fn json(event_type: &str) -> Vec<u8> {
        format!(r#"{{"event":"{event_type}","uid":"1"}}"#).into_bytes()
    }

    #[test]
    fn drops_listed_types_and_marks_the_rest() {
        let mut plugin = {{type_name}}::init(r#"{"drop":["user.login"]}"#).expect("valid config");
        let (login, start) = (json("user.login"), json("session.start"));
        let outcomes = plugin.process(&[Event::new(&login), Event::new(&start)]);
        assert!(matches!(outcomes[0], Outcome::Drop));
        let Outcome::Replace(json) = &outcomes[1] else { panic!("{:?}", outcomes[1]) };
        assert_eq!(String::from_utf8_lossy(json), r#"{"event":"session.start","uid":"1","processed_by":"{{name}}"}"#);
    }
}
