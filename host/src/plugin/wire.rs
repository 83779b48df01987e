//! The batch as it crosses into a plugin, and the plugin's answer as it comes
//! back: one JSON Lines buffer in, verdicts plus one JSON Lines buffer out
//! (`wit/plugin.wit` says why). This module turns ferry's events into the
//! first and the second into one [`Outcome`] per event, refusing an answer
//! that does not add up.

use super::bindings::ferry::plugin::types::{Output, Verdict};
use crate::event::{Event, Outcome, Route};
use ferry_event::lines::push_line;
use std::collections::HashSet;
use std::sync::Arc;

/// Writes `batch` as JSON Lines into `buffer`, which is cleared first (the
/// caller keeps it between batches, so its memory is reused). Each event is
/// one line even if its JSON holds line breaks ([`push_line`]).
pub(super) fn encode(batch: &[Event], buffer: &mut Vec<u8>) {
    buffer.clear();
    buffer.reserve(batch.iter().map(|event| event.json.len() + 1).sum());
    for event in batch {
        push_line(buffer, &event.json);
    }
}

/// Turns a plugin's output for a batch of `events` events into one outcome
/// per event, or says in one line why the output does not fit the batch.
///
/// `max_output` bounds the bytes a plugin may hand back: new JSON, failure
/// reasons and every sink name. (wasmtime has already refused to copy more
/// than that out of the guest, counting its own way; see `instance.rs`.)
/// Each sink list becomes one shared copy, without repeated names, that
/// every verdict naming it points to.
pub(super) fn decode(output: Output, events: usize, max_output: u64) -> Result<Vec<Outcome>, String> {
    let Output { verdicts, lines, routes } = output;
    if verdicts.len() != events {
        return Err(format!("{} for {}", count(verdicts.len(), "verdict"), count(events, "event")));
    }
    let reasons: u64 = verdicts.iter().map(|verdict| if let Verdict::Fail(reason) = verdict { reason.len() as u64 } else { 0 }).sum();
    let names: u64 = routes.iter().flatten().map(|name| name.len() as u64).sum();
    let returned = lines.len() as u64 + reasons + names;
    if returned > max_output {
        return Err(format!("{returned} bytes of output, over its max-output of {max_output} bytes"));
    }
    let routes: Vec<Arc<[String]>> = routes.into_iter().map(distinct).collect();
    let mut new_json = Lines::new(&lines);
    let mut outcomes = Vec::with_capacity(events);
    for verdict in verdicts {
        outcomes.push(match verdict {
            Verdict::Keep => Outcome::Keep,
            Verdict::Drop => Outcome::Drop,
            Verdict::Fail(reason) => Outcome::Fail(reason),
            Verdict::Replace => Outcome::Replace(new_json.next()?),
            Verdict::Route(route) => {
                let sinks = usize::try_from(route.sinks)
                    .ok()
                    .and_then(|index| routes.get(index))
                    .ok_or_else(|| format!("a verdict routes to sink list {} of {}", route.sinks, routes.len()))?;
                let json = if route.replaced { Some(new_json.next()?) } else { None };
                Outcome::Route(Route { sinks: Arc::clone(sinks), json })
            }
        });
    }
    new_json.finish()?;
    Ok(outcomes)
}

/// The sink list in its order with repeats removed, so that a list naming
/// one sink a million times costs ferry one name from here on.
fn distinct(list: Vec<String>) -> Arc<[String]> {
    let mut seen = HashSet::with_capacity(list.len().min(64));
    let mut kept = Vec::new();
    for name in &list {
        if seen.insert(name.as_str()) {
            kept.push(name.clone());
        }
    }
    Arc::from(kept)
}

/// The lines of new JSON, handed out one per verdict that asks for one.
struct Lines<'a> {
    rest: &'a [u8],
    taken: usize,
}

impl<'a> Lines<'a> {
    fn new(lines: &'a [u8]) -> Lines<'a> {
        Lines { rest: lines, taken: 0 }
    }

    fn next(&mut self) -> Result<Vec<u8>, String> {
        if self.rest.is_empty() {
            return Err(format!("{} of new JSON, fewer than its verdicts replace", count(self.taken, "line")));
        }
        let end = self.rest.iter().position(|&byte| byte == b'\n').unwrap_or(self.rest.len());
        let line = self.rest[..end].to_vec();
        self.rest = self.rest.get(end + 1..).unwrap_or_default();
        self.taken += 1;
        Ok(line)
    }

    fn finish(self) -> Result<(), String> {
        if self.rest.iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else {
            let more = self.rest.split(|&byte| byte == b'\n').filter(|line| !line.is_empty()).count();
            Err(format!("{} of new JSON more than its {} replaced", count(more, "line"), count(self.taken, "event")))
        }
    }
}

/// `1 event`, `2 events`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::bindings::ferry::plugin::types::Route as WireRoute;

    fn event(json: &str) -> Event {
        Event::from_json(json.as_bytes().to_vec()).expect("test events are valid")
    }

    fn output(verdicts: Vec<Verdict>, lines: &str, routes: &[&[&str]]) -> Output {
        let routes = routes.iter().map(|list| list.iter().map(|name| name.to_string()).collect()).collect();
        Output { verdicts, lines: lines.as_bytes().to_vec(), routes }
    }

    #[test]
    fn encode_writes_one_line_per_event_and_flattens_line_breaks() {
        let batch = [event(r#"{"uid":"a"}"#), event("{\n  \"uid\": \"b\"\n}")];
        let mut buffer = b"left over".to_vec();
        encode(&batch, &mut buffer);
        assert_eq!(String::from_utf8(buffer).expect("UTF-8"), "{\"uid\":\"a\"}\n{   \"uid\": \"b\" }\n");
    }

    #[test]
    fn decode_pairs_each_replacing_verdict_with_its_line() {
        let verdicts = vec![
            Verdict::Keep,
            Verdict::Replace,
            Verdict::Drop,
            Verdict::Route(WireRoute { sinks: 1, replaced: true }),
            Verdict::Route(WireRoute { sinks: 0, replaced: false }),
            Verdict::Fail("bad".into()),
        ];
        let outcomes =
            decode(output(verdicts, "{\"a\":1}\n{\"b\":2}", &[&["default"], &["security", "default"]]), 6, 1024).expect("decodes");
        assert_eq!(
            outcomes,
            [
                Outcome::Keep,
                Outcome::Replace(b"{\"a\":1}".to_vec()),
                Outcome::Drop,
                Outcome::Route(Route {
                    sinks: Arc::from(["security".to_owned(), "default".to_owned()]),
                    json: Some(b"{\"b\":2}".to_vec())
                }),
                Outcome::Route(Route { sinks: Arc::from(["default".to_owned()]), json: None }),
                Outcome::Fail("bad".into()),
            ]
        );
    }

    #[test]
    fn decode_refuses_output_that_does_not_add_up() {
        let refused = |out: Output, events| decode(out, events, 1024).expect_err("refused");
        assert_eq!(refused(output(vec![Verdict::Keep], "", &[]), 2), "1 verdict for 2 events");
        assert_eq!(
            refused(output(vec![Verdict::Replace, Verdict::Replace], "{}\n", &[]), 2),
            "1 line of new JSON, fewer than its verdicts replace"
        );
        assert_eq!(refused(output(vec![Verdict::Replace], "{}\n{}\n{}", &[]), 1), "2 lines of new JSON more than its 1 event replaced");
        assert_eq!(
            refused(output(vec![Verdict::Route(WireRoute { sinks: 2, replaced: false })], "", &[&["a"]]), 1),
            "a verdict routes to sink list 2 of 1"
        );
        let big = "x".repeat(2000);
        assert_eq!(refused(output(vec![Verdict::Fail(big)], "", &[]), 1), "2000 bytes of output, over its max-output of 1024 bytes");
    }

    #[test]
    fn decode_accepts_a_last_line_with_or_without_its_line_break() {
        for lines in ["{}", "{}\n"] {
            assert_eq!(decode(output(vec![Verdict::Replace], lines, &[]), 1, 1024).expect("decodes"), [Outcome::Replace(b"{}".to_vec())]);
        }
    }

    #[test]
    fn sink_names_count_against_max_output_and_each_list_is_shared_once() {
        let long = "s".repeat(600);
        let names: &[&str] = &[&long, &long];
        let refused = decode(output(vec![Verdict::Route(WireRoute { sinks: 0, replaced: false })], "", &[names]), 1, 1024)
            .expect_err("over max-output");
        assert_eq!(refused, "1200 bytes of output, over its max-output of 1024 bytes");

        let verdicts = (0..3).map(|_| Verdict::Route(WireRoute { sinks: 0, replaced: false })).collect();
        let outcomes = decode(output(verdicts, "", &[&["security", "default", "security", "default"]]), 3, 1024).expect("fits");
        let lists: Vec<&Arc<[String]>> = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Route(route) => &route.sinks,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lists[0][..], ["security".to_owned(), "default".to_owned()], "repeats removed, order kept");
        assert!(lists.iter().all(|list| Arc::ptr_eq(list, lists[0])), "one copy shared by every verdict");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn verdict() -> impl Strategy<Value = Verdict> {
            prop_oneof![
                Just(Verdict::Keep),
                Just(Verdict::Drop),
                Just(Verdict::Replace),
                (0u32..6, any::<bool>()).prop_map(|(sinks, replaced)| Verdict::Route(WireRoute { sinks, replaced })),
                (any::<u32>(), any::<bool>()).prop_map(|(sinks, replaced)| Verdict::Route(WireRoute { sinks, replaced })),
                ".{0,40}".prop_map(Verdict::Fail),
            ]
        }

        fn lines() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'{'), Just(b'}'), Just(b' '), any::<u8>()], 0..200),
                proptest::collection::vec("[{}a-z\":, ]{0,20}", 0..12).prop_map(|lines| lines.join("\n").into_bytes()),
            ]
        }

        fn routes() -> impl Strategy<Value = Vec<Vec<String>>> {
            proptest::collection::vec(proptest::collection::vec("[a-z\n]{0,12}", 0..5), 0..5)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever a plugin hands back, decoding never panics; it either
            /// gives one outcome per event or refuses in one line.
            #[test]
            fn decoding_never_panics_and_refuses_in_one_line(
                verdicts in proptest::collection::vec(verdict(), 0..12),
                lines in lines(),
                routes in routes(),
                events in 0usize..12,
                max_output in prop_oneof![Just(u64::MAX), 0u64..400],
            ) {
                match decode(Output { verdicts, lines, routes }, events, max_output) {
                    Ok(outcomes) => prop_assert_eq!(outcomes.len(), events),
                    Err(message) => {
                        prop_assert!(!message.is_empty());
                        prop_assert!(!message.contains('\n') && !message.contains('\r'), "{:?}", message);
                    }
                }
            }
        }
    }
}
