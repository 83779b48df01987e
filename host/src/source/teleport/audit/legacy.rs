//! The legacy engine: pages `GetUnstructuredEvents` in ascending order, one
//! `window-size` window at a time from the start time, resuming on the page
//! that held the last delivered event and skipping up to its id.

use super::Reader;
use crate::shutdown::Stopped;
use crate::source::Item;
use crate::source::teleport::connect::describe_status;
use crate::source::teleport::cursor::{AuditPosition, LegacyCursor};
use crate::units::format_time;
use ferry_proto::auditlog::{EventUnstructured, EventsUnstructured, GetUnstructuredEventsRequest, Order};
use std::sync::Arc;
use std::time::SystemTime;

impl Reader {
    /// Pages through the audit log from `cursor` until stopped.
    pub(super) async fn run_legacy(mut self, cursor: Option<LegacyCursor>) {
        let mut cursor = cursor.unwrap_or_else(|| LegacyCursor::start(format_time(self.settings.start_time)));
        while self.legacy_step(&mut cursor).await.is_ok() {}
    }

    /// Reads one page and moves `cursor` on.
    async fn legacy_step(&mut self, cursor: &mut LegacyCursor) -> Result<(), Stopped> {
        let window_start = crate::units::parse_time(&cursor.window_start).unwrap_or(self.settings.start_time);
        let now = SystemTime::now();
        // A window past what a time can hold ends now, as the last one.
        let window_end = window_start.checked_add(self.settings.window_size).unwrap_or(now).min(now);
        let last_window = window_end >= now;
        let page = match self.fetch_page(window_start, window_end, &cursor.start_key).await? {
            Ok(page) => page,
            Err(status) => return self.legacy_recover(cursor, &status).await,
        };
        // A search started over may have more events already read than a
        // page holds (many events in one millisecond): pass whole pages.
        let (resume_at, carried) = match cursor.skip {
            Some(done) if done > page.items.len() && !page.last_key.is_empty() => (page.items.len(), done - page.items.len()),
            skip => (resume_at(&page.items, &cursor.last_id, skip), 0),
        };
        let fresh = page.items.len().saturating_sub(resume_at);
        for (at, event) in page.items.into_iter().enumerate().skip(resume_at) {
            cursor.last_id = Arc::from(event.id.as_str());
            cursor.skip = Some(at + 1);
            match cursor_time(&event) {
                Some(time) if *time == *cursor.last_time => cursor.same_time += 1,
                Some(time) => {
                    cursor.last_time = Arc::from(time);
                    cursor.same_time = 1;
                }
                None => cursor.same_time = 0,
            }
            self.forward(event, AuditPosition::Legacy(cursor.clone())).await?;
        }
        if !page.last_key.is_empty() {
            // The next page; nothing of it is read yet. The last id and time
            // stay: a search that must start over starts from them.
            cursor.start_key = Arc::from(page.last_key);
            cursor.skip = Some(carried);
            return Ok(());
        }
        if !last_window {
            *cursor = LegacyCursor::start(format_time(window_end));
            return self.send(Item::Progress, AuditPosition::Legacy(cursor.clone())).await;
        }
        if fresh == 0 {
            self.idle().await?;
        }
        Ok(())
    }

    /// Teleport refuses a search for good (a page key that expired or that
    /// another backend issued): searches again, without a key, from the time
    /// of the last event read, passing the events of that time already read
    /// (they come first, in the same order). Events read before that stay
    /// read; a cursor of an older ferry, which did not count them, finds the
    /// last event by id instead, and at worst some of its time come again.
    async fn legacy_recover(&mut self, cursor: &mut LegacyCursor, status: &tonic::Status) -> Result<(), Stopped> {
        let reason = describe_status(&self.settings.addr, status);
        if cursor.start_key.is_empty() {
            // The search has no key to drop: nothing ferry can change makes
            // Teleport answer it, so an operator must look.
            let mut retry = self.retry();
            let what = format!("search the audit log from {}", cursor.window_start);
            return self.slowly(&mut retry, &what, &reason, "check the cluster's audit log backend").await;
        }
        let from = if cursor.last_time.is_empty() { cursor.window_start.clone() } else { cursor.last_time.clone() };
        tracing::warn!(from = %from, last_event = %cursor.last_id, "Teleport refused the audit log page key: {reason}; searching again from the last event read.");
        cursor.window_start = from;
        cursor.start_key = Arc::default();
        cursor.skip = (cursor.same_time > 0).then_some(cursor.same_time);
        Ok(())
    }

    /// Asks for one page until Teleport answers; `Ok(Err(status))` when the
    /// request is refused for good.
    async fn fetch_page(
        &mut self,
        from: SystemTime,
        to: SystemTime,
        start_key: &str,
    ) -> Result<Result<EventsUnstructured, tonic::Status>, Stopped> {
        let mut retry = self.retry();
        loop {
            let request = GetUnstructuredEventsRequest {
                namespace: "default".into(),
                start_date: Some(from.into()),
                end_date: Some(to.into()),
                event_types: self.settings.filter.types.iter().cloned().collect(),
                limit: i32::try_from(self.settings.page_size).unwrap_or(i32::MAX),
                start_key: start_key.to_owned(),
                order: Order::Ascending.into(),
            };
            let call = self.client.get_unstructured_events(request);
            let answer = self.shutdown.until(call).await?;
            match answer {
                Ok(page) => {
                    self.succeeded(&mut retry);
                    return Ok(Ok(page.into_inner()));
                }
                Err(status) => {
                    if self.wait_or_recover(&mut retry, &status, "read the audit log").await? {
                        return Ok(Err(status));
                    }
                }
            }
        }
    }
}

/// The time of `event` as the cursor keeps it (RFC 3339, nanoseconds), to
/// search again from if a page key is refused.
///
/// `None` when the event has no time, or one no cursor can hold: before
/// 1970 (Go's zero time is year 1), after year 9999, or past what a
/// `SystemTime` holds. Such an event is still delivered as served (its JSON
/// carries its own `time`), with one line naming it; the cursor keeps the
/// time of the event before it, and a search started over finds it by id.
fn cursor_time(event: &EventUnstructured) -> Option<String> {
    let sent = event.time?;
    let time = SystemTime::try_from(sent).ok().and_then(crate::units::format_time_nanos);
    if time.is_none() {
        tracing::warn!(
            "Teleport sent audit event `{}` ({}, index {}) with the time {}s {}ns since 1970, which no cursor can hold; it is delivered as served.",
            event.id,
            event.r#type,
            event.index,
            sent.seconds,
            sent.nanos
        );
    }
    time
}

/// Where to go on in a page that was read before up to `skip` events, the
/// last of them `last_id`.
///
/// The count decides when the event it points at still has the last id (or
/// there is no id to check), so that an id that repeats, or is empty, cannot
/// send ferry back to an earlier event of the page again and again. When the
/// page changed under the cursor, or the count is unknown (a cursor of an
/// older ferry, a search started over), the occurrence of the id nearest the
/// count is taken; when the id is not on the page, the whole page is read
/// again: duplicates rather than a loss.
fn resume_at(items: &[EventUnstructured], last_id: &str, skip: Option<usize>) -> usize {
    match skip {
        Some(0) => return 0,
        Some(done) if done <= items.len() && (last_id.is_empty() || items[done - 1].id == last_id) => return done,
        _ => {}
    }
    if last_id.is_empty() {
        return skip.unwrap_or(0).min(items.len());
    }
    let near = skip.unwrap_or(0).saturating_sub(1);
    let found = items.iter().enumerate().filter(|(_, event)| event.id == last_id).map(|(at, _)| at).min_by_key(|at| at.abs_diff(near));
    found.map_or(0, |at| at + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[&str]) -> Vec<EventUnstructured> {
        ids.iter().map(|id| EventUnstructured { id: (*id).to_owned(), ..Default::default() }).collect()
    }

    #[test]
    fn a_page_resumes_after_the_events_read_even_when_ids_repeat_or_are_empty() {
        let repeated = page(&["a", "b", "a"]);
        assert_eq!(resume_at(&repeated, "a", Some(3)), 3, "the repeated id at the end is the last read, not the first");
        assert_eq!(resume_at(&repeated, "a", Some(1)), 1);
        let empty = page(&["", "", ""]);
        assert_eq!(resume_at(&empty, "", Some(3)), 3, "events without an id are counted");
        assert_eq!(resume_at(&empty, "", Some(2)), 2);
        assert_eq!(resume_at(&page(&["a", "b"]), "b", Some(0)), 0, "a new page starts at its first event");
    }

    #[test]
    fn a_page_that_changed_is_resumed_by_id() {
        // An event arrived late, before the last one read.
        let page = page(&["a", "late", "b", "c"]);
        assert_eq!(resume_at(&page, "b", Some(2)), 3);
        // An older ferry's cursor (no count), or a search started over.
        assert_eq!(resume_at(&page, "b", None), 3);
        assert_eq!(resume_at(&page, "gone", None), 0, "an id not on the page: read it all again");
        assert_eq!(resume_at(&page, "", None), 0);
    }

    fn event_at(seconds: i64, nanos: i32) -> EventUnstructured {
        EventUnstructured { id: "u-1".into(), time: Some(prost_types::Timestamp { seconds, nanos }), ..Default::default() }
    }

    #[test]
    fn the_cursor_keeps_only_times_it_can_write() {
        assert_eq!(cursor_time(&event_at(1_577_836_800, 5)).as_deref(), Some("2020-01-01T00:00:00.000000005Z"));
        assert_eq!(cursor_time(&event_at(1_577_836_800, 1_500_000_000)).as_deref(), Some("2020-01-01T00:00:01.500000000Z"));
        assert_eq!(cursor_time(&event_at(1_577_836_800, -1)).as_deref(), Some("2019-12-31T23:59:59.999999999Z"));
        assert_eq!(cursor_time(&event_at(253_402_300_799, 999_999_999)).as_deref(), Some("9999-12-31T23:59:59.999999999Z"));
        for (seconds, nanos) in [(-1, 0), (0, -1), (-62_135_596_800, 0), (253_402_300_800, 0), (i64::MAX, 999_999_999), (i64::MIN, 0)] {
            assert_eq!(cursor_time(&event_at(seconds, nanos)), None, "{seconds}s {nanos}ns");
        }
        assert_eq!(cursor_time(&EventUnstructured::default()), None, "no time");
    }

    /// Fuzzing with a fixed budget, inside the normal test run: 256 cases
    /// for each property here, well under a second.
    mod fuzz {
        use super::*;
        use crate::source::teleport::audit::{TypeFilter, read_filtered};
        use ferry_proto::rawstruct::RawStruct;
        use proptest::prelude::*;
        use prost::Message as _;

        /// An event as a page may carry it: any time, any id and type, any
        /// bytes as its Struct.
        fn any_event() -> impl Strategy<Value = EventUnstructured> {
            (any::<i64>(), any::<i32>(), ".{0,8}", ".{0,8}", any::<i64>(), prop::collection::vec(any::<u8>(), 0..128), any::<bool>())
                .prop_map(|(seconds, nanos, id, kind, index, wire, timed)| EventUnstructured {
                    r#type: kind,
                    id,
                    time: timed.then_some(prost_types::Timestamp { seconds, nanos }),
                    index,
                    unstructured: Some(RawStruct::from_wire(wire)),
                })
        }

        /// What the engine does with each event of a page.
        fn read_each(items: Vec<EventUnstructured>) -> Result<(), TestCaseError> {
            for event in items {
                if let Some(time) = cursor_time(&event) {
                    prop_assert!(crate::units::parse_time(&time).is_ok(), "the cursor's time reads back: {time}");
                }
                let _ = read_filtered(event, &TypeFilter::default(), &mut Vec::new());
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any page of events: a cursor time or none, an event or a
            /// dead letter, never a panic.
            #[test]
            fn any_event_of_a_page_is_read_without_panicking(items in prop::collection::vec(any_event(), 0..6)) {
                read_each(items)?;
            }

            /// Any bytes Teleport answers a page with.
            #[test]
            fn any_page_bytes_decode_or_fail_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(page) = EventsUnstructured::decode(bytes.as_slice()) {
                    read_each(page.items)?;
                }
            }

            /// Any page and any cursor: a place on the page, never past it.
            #[test]
            fn any_page_resumes_within_it(ids in prop::collection::vec("[ab]?", 0..8), last in "[abc]?", skip in prop::option::of(0..12usize)) {
                let items = page(&ids.iter().map(String::as_str).collect::<Vec<_>>());
                prop_assert!(resume_at(&items, &last, skip) <= items.len());
            }
        }
    }
}
