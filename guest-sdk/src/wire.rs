//! Between the contract's buffers and a plugin's per-event view: the batch's
//! JSON Lines become [`Event`]s, and the plugin's [`Outcome`]s become the
//! verdicts, the one buffer of new JSON and the table of sink lists that
//! `process` returns.

use crate::bindings::ferry::plugin::types::{Output, Route as WireRoute, Verdict};
use crate::{Event, Outcome, Route};
use ferry_event::lines::push_line;

/// The events of a JSON Lines buffer, borrowing their JSON from it.
pub(crate) fn events(lines: &[u8]) -> Vec<Event<'_>> {
    ferry_event::lines::split(lines).map(Event::new).collect()
}

/// The output ferry reads: one verdict per outcome, the new JSON of every
/// replaced event on its own line, and each distinct sink list once.
pub(crate) fn output(outcomes: Vec<Outcome>) -> Output {
    // Reserved at once: a plugin close to its memory cap holds its outcomes
    // and this copy of them, and doubling as it grows would need more.
    let lines = outcomes.iter().map(|outcome| outcome.new_json().map_or(0, |json| json.len() + 1)).sum();
    let mut output = Output { verdicts: Vec::with_capacity(outcomes.len()), lines: Vec::with_capacity(lines), routes: Vec::new() };
    for outcome in outcomes {
        let verdict = match outcome {
            Outcome::Keep => Verdict::Keep,
            Outcome::Drop => Verdict::Drop,
            Outcome::Fail(reason) => Verdict::Fail(reason),
            Outcome::Replace(json) => {
                push_line(&mut output.lines, &json);
                Verdict::Replace
            }
            Outcome::Route(Route { sinks, json }) => {
                let replaced = json.is_some();
                if let Some(json) = json {
                    push_line(&mut output.lines, &json);
                }
                Verdict::Route(WireRoute { sinks: sink_list(&mut output.routes, sinks), replaced })
            }
        };
        output.verdicts.push(verdict);
    }
    output
}

/// The index of `sinks` in the batch's table, adding it when it is new.
/// Batches route to a handful of distinct lists, so a linear search is the
/// quick way.
fn sink_list(routes: &mut Vec<Vec<String>>, sinks: Vec<String>) -> u32 {
    let index = match routes.iter().position(|known| *known == sinks) {
        Some(index) => index,
        None => {
            routes.push(sinks);
            routes.len() - 1
        }
    };
    // A batch has far fewer than 2^32 events, so far fewer distinct lists.
    u32::try_from(index).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_the_lines_with_or_without_a_last_line_break() {
        for lines in [&b"{\"a\":1}\n{}\n"[..], b"{\"a\":1}\n{}"] {
            let jsons: Vec<&[u8]> = events(lines).iter().map(|event| event.json).collect();
            assert_eq!(jsons, [&b"{\"a\":1}"[..], b"{}"]);
        }
        assert!(events(b"").is_empty());
    }

    #[test]
    fn outcomes_become_verdicts_lines_and_one_entry_per_distinct_sink_list() {
        let route = |sinks: &[&str], json: Option<&str>| {
            Outcome::Route(Route { sinks: sinks.iter().map(|s| s.to_string()).collect(), json: json.map(|j| j.as_bytes().to_vec()) })
        };
        let output = output(vec![
            Outcome::Keep,
            Outcome::Replace(b"{\n\"a\":1}".to_vec()),
            route(&["security", "default"], None),
            route(&["sessions"], Some("{\"b\":2}")),
            route(&["security", "default"], None),
            Outcome::Drop,
            Outcome::Fail("bad".into()),
        ]);
        let verdicts: Vec<String> = output.verdicts.iter().map(|verdict| format!("{verdict:?}")).collect();
        assert_eq!(
            verdicts,
            [
                "Verdict::Keep",
                "Verdict::Replace",
                "Verdict::Route(Route { sinks: 0, replaced: false })",
                "Verdict::Route(Route { sinks: 1, replaced: true })",
                "Verdict::Route(Route { sinks: 0, replaced: false })",
                "Verdict::Drop",
                "Verdict::Fail(\"bad\")",
            ]
        );
        assert_eq!(output.lines, b"{ \"a\":1}\n{\"b\":2}\n");
        assert_eq!(output.routes, [vec!["security".to_string(), "default".to_string()], vec!["sessions".to_string()]]);
    }
}
