//! A test on one event, as written in the filter, route and enrich configs.
//!
//! ```toml
//! # every listed test must hold; a list of patterns matches when any does
//! { type = "user.login", success = false }
//! { type = ["exec", "session.command"], user = "*@example.com", cluster = "prod-*" }
//! { code = "T1000W", match = [{ pointer = "/method", in = ["local", "oidc"] }] }
//! ```

use crate::glob::Globs;
use crate::subject::Subject;
use serde::Deserialize;
use serde_json::Value;

/// Tests on one event; it holds when every test given holds.
///
/// The shortcuts read Teleport's fields: `type` the event type, `user` the
/// `user` field, `cluster` `cluster_name`, `code` `code`, `success` the
/// boolean `success` (an event without it does not match `success`). Each
/// of `type`, `user`, `cluster` and `code` is a glob or a list of globs;
/// a field that is absent or not a string matches no glob. `match` is a
/// list of [`Predicate`]s on any field, by JSON pointer.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "ConditionSpec")]
pub struct Condition {
    event_type: Option<Globs>,
    user: Option<Globs>,
    cluster: Option<Globs>,
    code: Option<Globs>,
    success: Option<bool>,
    predicates: Vec<Predicate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionSpec {
    #[serde(rename = "type")]
    event_type: Option<Globs>,
    user: Option<Globs>,
    cluster: Option<Globs>,
    code: Option<Globs>,
    success: Option<bool>,
    #[serde(rename = "match", default)]
    predicates: Vec<Predicate>,
}

impl TryFrom<ConditionSpec> for Condition {
    type Error = String;

    fn try_from(spec: ConditionSpec) -> Result<Condition, String> {
        let condition = Condition {
            event_type: spec.event_type,
            user: spec.user,
            cluster: spec.cluster,
            code: spec.code,
            success: spec.success,
            predicates: spec.predicates,
        };
        if condition.is_empty() {
            return Err("has no test; give at least one of `type`, `user`, `cluster`, `code`, `success`, `match`".to_owned());
        }
        Ok(condition)
    }
}

impl Condition {
    fn is_empty(&self) -> bool {
        self.event_type.is_none()
            && self.user.is_none()
            && self.cluster.is_none()
            && self.code.is_none()
            && self.success.is_none()
            && self.predicates.is_empty()
    }

    /// Whether every test holds for `event`. Tests on the type come first,
    /// so an event of another type is refused without parsing its JSON.
    pub fn matches(&self, event: &Subject<'_>) -> bool {
        if let Some(types) = &self.event_type
            && !types.matches(event.event_type())
        {
            return false;
        }
        let text_matches = |globs: &Option<Globs>, key: &str| match globs {
            None => true,
            Some(globs) => event.field(key).and_then(Value::as_str).is_some_and(|text| globs.matches(text)),
        };
        if !(text_matches(&self.user, "user") && text_matches(&self.cluster, "cluster_name") && text_matches(&self.code, "code")) {
            return false;
        }
        if let Some(success) = self.success
            && event.field("success").and_then(Value::as_bool) != Some(success)
        {
            return false;
        }
        if self.predicates.is_empty() {
            return true;
        }
        let Some(json) = event.json() else { return false };
        self.predicates.iter().all(|predicate| predicate.holds(json))
    }
}

/// A test on the value at a JSON pointer (RFC 6901: `/success`,
/// `/addr.remote`, `/attributes/groups/0`; `~1` stands for `/` in a key).
///
/// Exactly one of: `equals` (the value is this JSON value; `1` and `1.0` are
/// different), `in` (it equals one of a list), `exists` (`true`: there is a
/// value, `false`: there is none), `glob` (it is a string matching one of the
/// globs).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "PredicateSpec")]
pub struct Predicate {
    pointer: String,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equals(Value),
    In(Vec<Value>),
    Exists(bool),
    Glob(Globs),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredicateSpec {
    pointer: String,
    equals: Option<Value>,
    #[serde(rename = "in")]
    any_of: Option<Vec<Value>>,
    exists: Option<bool>,
    glob: Option<Globs>,
}

impl TryFrom<PredicateSpec> for Predicate {
    type Error = String;

    fn try_from(spec: PredicateSpec) -> Result<Predicate, String> {
        if !spec.pointer.is_empty() && !spec.pointer.starts_with('/') {
            return Err(format!("`pointer` ({:?}) must start with `/`, such as \"/success\" or \"/addr.remote\"", spec.pointer));
        }
        let mut tests: Vec<Test> = Vec::new();
        tests.extend(spec.equals.map(Test::Equals));
        tests.extend(spec.any_of.map(Test::In));
        tests.extend(spec.exists.map(Test::Exists));
        tests.extend(spec.glob.map(Test::Glob));
        if tests.len() != 1 {
            return Err(format!("has {} tests; give exactly one of `equals`, `in`, `exists`, `glob`", tests.len()));
        }
        let test = tests.remove(0);
        Ok(Predicate { pointer: spec.pointer, test })
    }
}

impl Predicate {
    /// Whether the test holds for the event's JSON.
    pub fn holds(&self, json: &Value) -> bool {
        let value = json.pointer(&self.pointer);
        match &self.test {
            Test::Equals(expected) => value == Some(expected),
            Test::In(options) => value.is_some_and(|value| options.contains(value)),
            Test::Exists(expected) => value.is_some() == *expected,
            Test::Glob(globs) => value.and_then(Value::as_str).is_some_and(|text| globs.matches(text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(json: &str) -> Condition {
        crate::config::parse(json).unwrap_or_else(|error| panic!("{json}: {error}"))
    }

    fn holds(condition_json: &str, event_type: &str, event: &str) -> bool {
        condition(condition_json).matches(&Subject::new(event_type, event.as_bytes()))
    }

    const FAILED_LOGIN: &str =
        r#"{"code":"T1000W","event":"user.login","method":"local","success":false,"user":"fsdfsdf","addr.remote":"10.0.0.1:22"}"#;

    #[test]
    fn shortcuts() {
        assert!(holds(r#"{"type":"user.*","success":false}"#, "user.login", FAILED_LOGIN));
        assert!(!holds(r#"{"type":"user.*","success":true}"#, "user.login", FAILED_LOGIN));
        assert!(!holds(r#"{"type":"session.*"}"#, "user.login", FAILED_LOGIN));
        assert!(holds(r#"{"user":["alice","fsd*"]}"#, "user.login", FAILED_LOGIN));
        assert!(holds(r#"{"code":"T100?W"}"#, "user.login", FAILED_LOGIN));
        assert!(!holds(r#"{"cluster":"*"}"#, "user.login", FAILED_LOGIN), "no cluster_name: no match");
        assert!(!holds(r#"{"success":false}"#, "exec", r#"{"event":"exec"}"#), "no success field: no match");
    }

    #[test]
    fn predicates() {
        assert!(holds(r#"{"match":[{"pointer":"/success","equals":false}]}"#, "", FAILED_LOGIN));
        assert!(holds(r#"{"match":[{"pointer":"/method","in":["oidc","local"]}]}"#, "", FAILED_LOGIN));
        assert!(holds(r#"{"match":[{"pointer":"/addr.remote","glob":"10.*"}]}"#, "", FAILED_LOGIN));
        assert!(holds(r#"{"match":[{"pointer":"/error","exists":false}]}"#, "", FAILED_LOGIN));
        assert!(!holds(r#"{"match":[{"pointer":"/user","exists":false}]}"#, "", FAILED_LOGIN));
        assert!(!holds(r#"{"match":[{"pointer":"/success","equals":false},{"pointer":"/method","equals":"oidc"}]}"#, "", FAILED_LOGIN));
        assert!(!holds(r#"{"match":[{"pointer":"/success","glob":"*"}]}"#, "", FAILED_LOGIN), "glob needs a string");
    }

    #[test]
    fn config_errors_say_what_is_wrong() {
        let error = |json: &str| crate::config::parse::<Condition>(json).expect_err(json);
        assert_eq!(error("{}"), "config: has no test; give at least one of `type`, `user`, `cluster`, `code`, `success`, `match`");
        assert_eq!(
            error(r#"{"match":[{"pointer":"/a","equals":1,"exists":true}]}"#),
            "config: `match[0]`: has 2 tests; give exactly one of `equals`, `in`, `exists`, `glob`"
        );
        assert_eq!(
            error(r#"{"match":[{"pointer":"success","exists":true}]}"#),
            "config: `match[0]`: `pointer` (\"success\") must start with `/`, such as \"/success\" or \"/addr.remote\""
        );
        assert!(error(r#"{"tpye":"x"}"#).starts_with("config: `tpye`: unknown field `tpye`, expected one of `type`"));
    }
}
