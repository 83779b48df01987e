//! The one place that decides what an HTTP answer means for a request.

use hyper::StatusCode;
use hyper::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;

/// What one attempt to send a request came to, and so what to do next.
/// (Not the plugin contract's `verdict`, which is a plugin's decision on
/// one event.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver took the request: its events are acknowledged.
    Acknowledged,
    /// Worth trying again: the receiver is down, busy, slow or refuses the
    /// request itself ([`Action::Retry`]).
    Retry {
        /// What happened, on one line.
        reason: String,
        /// The wait the receiver asked for (`Retry-After`), if any.
        after: Option<Duration>,
    },
    /// The body is too large for the receiver ([`Action::Split`]): split it,
    /// or give up on a single event.
    TooLarge,
    /// The receiver cannot take these events ([`Action::DeadLetter`]):
    /// they go to the dead-letter table.
    Refused {
        /// Status and the start of the body.
        reason: String,
    },
}

/// What the sink does with a request's events after the receiver answered:
/// the one table from status (and body) to action, [`StatusTable::action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The events are taken.
    Acknowledge,
    /// The request could not be taken (receiver down, busy, misconfigured,
    /// or a proxy in front of it refusing): send it again, with backoff,
    /// until it is taken. Nothing is dead-lettered for it.
    Retry,
    /// The body is too large: split it in two and send the halves; a
    /// single event still too large is dead-lettered.
    Split,
    /// The receiver cannot take these events, whatever the request: they go
    /// to the dead-letter table.
    DeadLetter,
}

/// Bodies of nginx's own 400 pages for what is wrong with the connection or
/// the request's head, never with the events: a client certificate missing
/// (its 496) or refused (495), plain HTTP to an HTTPS port (497), headers too
/// large (494). nginx sends these four as 400; the page says which.
const REQUEST_PROBLEM_PAGES: &[&str] = &[
    "No required SSL certificate was sent",
    "The SSL certificate error",
    "The plain HTTP request was sent to HTTPS port",
    "Request Header Or Cookie Too Large",
];

/// The statuses of one sink: the default table, moved per status by the
/// sink's `success-statuses`, `retry-statuses` and `dead-letter-statuses`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusTable {
    /// Acknowledging statuses; empty means any 2xx.
    pub success: Vec<u16>,
    /// Statuses retried whatever the default table says.
    pub retry: Vec<u16>,
    /// Statuses whose events are dead-lettered whatever the default says.
    pub dead_letter: Vec<u16>,
}

impl StatusTable {
    /// What to do after `status` with `body` (its start). In order: a
    /// success status acknowledges; a 400 carrying one of nginx's pages about
    /// the connection is retried (no list can make it dead-letter: the
    /// events were never looked at); then the sink's lists; then
    /// [`default_action`].
    pub fn action(&self, status: u16, body: &[u8]) -> Action {
        if self.acknowledges(status) {
            return Action::Acknowledge;
        }
        if status == 400 && is_request_problem_page(body) {
            return Action::Retry;
        }
        if self.retry.contains(&status) {
            return Action::Retry;
        }
        if self.dead_letter.contains(&status) {
            return Action::DeadLetter;
        }
        match default_action(status) {
            // A 2xx left out of `success-statuses`: the receiver most likely
            // stored the events, but not the way this sink is told to
            // expect. Sending them again would store them again on every
            // attempt, for ever; the dead-letter table keeps them, loudly.
            Action::Acknowledge => Action::DeadLetter,
            action => action,
        }
    }

    /// Whether `status` acknowledges a request.
    pub fn acknowledges(&self, status: u16) -> bool {
        if self.success.is_empty() { (200..300).contains(&status) } else { self.success.contains(&status) }
    }
}

/// The default table. Only a status about the *events* dead-letters them:
/// 400 (a body the receiver cannot parse; Logstash answers it only for a
/// body it cannot decompress) and 422 (it parsed them and will not take
/// them); 413 splits the request, down to one event. Every other status says
/// the *request* cannot be taken now (3xx, 401, 403, 404, 405, 407, 408, 421,
/// 429, 5xx, ...: the sink or a proxy in front of it is misconfigured, down
/// or busy), and dead-lettering for it would empty the whole stream into the
/// dead-letter table during an outage: it is retried until the receiver
/// takes the events.
pub fn default_action(status: u16) -> Action {
    match status {
        200..=299 => Action::Acknowledge,
        413 => Action::Split,
        400 | 422 => Action::DeadLetter,
        _ => Action::Retry,
    }
}

/// Whether a 400's body is one of nginx's pages about the connection or the
/// request's head ([`REQUEST_PROBLEM_PAGES`]).
fn is_request_problem_page(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    REQUEST_PROBLEM_PAGES.iter().any(|page| text.contains(&page.to_ascii_lowercase()))
}

/// Classifies a response by `table`. Transport errors (connect, TLS,
/// timeout) are classified by the caller as [`Attempt::Retry`].
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], table: &StatusTable) -> Attempt {
    let reason = || format!("HTTP {status}{}", excerpt(body));
    match table.action(status.as_u16(), body) {
        Action::Acknowledge => Attempt::Acknowledged,
        Action::Split => Attempt::TooLarge,
        Action::DeadLetter => Attempt::Refused { reason: reason() },
        // Only a 429 or a 5xx asks for a wait; a 408 says we were slow.
        Action::Retry => {
            let after = (status.as_u16() == 429 || status.is_server_error()).then(|| retry_after(headers)).flatten();
            Attempt::Retry { reason: reason(), after }
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare and ignored; so is
/// anything else that is not a whole number of seconds). However long, the
/// wait is capped by the sink's `max-retry-after`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Characters of a body quoted in a reason: enough for nginx's or
/// Logstash's one-line message, little enough for a log line.
const EXCERPT_CHARS: usize = 160;

/// ": " and the start of a body, sanitized to one short line: HTML tags
/// dropped (a proxy's error page says what it says in its text), control
/// characters dropped, runs of white space made one space.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(2048)]);
    let text = if text.trim_start().starts_with('<') { without_tags(&text) } else { text.into_owned() };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text: String = text.chars().filter(|c| !c.is_control()).take(EXCERPT_CHARS).collect();
    if text.is_empty() { String::new() } else { format!(": {text}") }
}

/// `html` with everything between `<` and `>` made a space.
fn without_tags(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(success: &[u16], retry: &[u16], dead_letter: &[u16]) -> StatusTable {
        StatusTable { success: success.to_vec(), retry: retry.to_vec(), dead_letter: dead_letter.to_vec() }
    }

    /// nginx's page for a client that sent no certificate (its 496, sent as 400).
    const NO_CERTIFICATE: &[u8] = b"<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>\r\n\
        <center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL certificate was sent</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

    #[test]
    fn every_listed_status_has_its_action_by_default() {
        use Action::*;
        let default = StatusTable::default();
        let expected: &[(u16, Action)] = &[
            (200, Acknowledge),
            (201, Acknowledge),
            (202, Acknowledge),
            (204, Acknowledge),
            // Redirects: the URL is wrong (or a login page is in the way).
            (301, Retry),
            (302, Retry),
            (307, Retry),
            (308, Retry),
            // About the events.
            (400, DeadLetter),
            (413, Split),
            (422, DeadLetter),
            // About the request: credentials, certificates, paths, proxies.
            (401, Retry),
            (403, Retry),
            (404, Retry),
            (405, Retry),
            (407, Retry),
            (408, Retry),
            (409, Retry),
            (410, Retry),
            (415, Retry),
            (421, Retry),
            (429, Retry),
            (431, Retry),
            (495, Retry),
            (496, Retry),
            (497, Retry),
            (499, Retry),
            // The receiver or a proxy down or failing.
            (500, Retry),
            (501, Retry),
            (502, Retry),
            (503, Retry),
            (504, Retry),
            (599, Retry),
            (100, Retry),
        ];
        for &(status, action) in expected {
            assert_eq!(default.action(status, b""), action, "HTTP {status}");
        }
    }

    #[test]
    fn a_400_with_an_nginx_page_about_the_connection_is_retried_whatever_the_lists_say() {
        for page in REQUEST_PROBLEM_PAGES {
            let body = format!("<html><head><title>400 {page}</title></head><body>nginx</body></html>");
            assert_eq!(StatusTable::default().action(400, body.as_bytes()), Action::Retry, "{page}");
            assert_eq!(table(&[], &[], &[400]).action(400, body.as_bytes()), Action::Retry, "{page}");
        }
        assert_eq!(StatusTable::default().action(400, NO_CERTIFICATE), Action::Retry);
        // Logstash's own 400: a body it cannot decompress.
        assert_eq!(StatusTable::default().action(400, b"Decompression failed"), Action::DeadLetter);
        // The page matters for a 400 only.
        assert_eq!(StatusTable::default().action(422, NO_CERTIFICATE), Action::DeadLetter);
    }

    #[test]
    fn a_sinks_lists_move_statuses() {
        use Action::*;
        let moved = table(&[200, 202], &[400, 413], &[403, 409]);
        for (status, action) in [
            (200, Acknowledge),
            (202, Acknowledge),
            // A 2xx the sink does not count as success: dead-lettered, not
            // sent again and again.
            (201, DeadLetter),
            (204, DeadLetter),
            (400, Retry),
            (413, Retry),
            (403, DeadLetter),
            (409, DeadLetter),
            (422, DeadLetter),
            (401, Retry),
            (503, Retry),
        ] {
            assert_eq!(moved.action(status, b""), action, "HTTP {status} with {moved:?}");
        }
    }

    fn attempt(code: u16, table: &StatusTable) -> &'static str {
        let status = StatusCode::from_u16(code).expect("valid status");
        match classify(status, &HeaderMap::new(), b"", table) {
            Attempt::Acknowledged => "ack",
            Attempt::Retry { .. } => "retry",
            Attempt::TooLarge => "too-large",
            Attempt::Refused { .. } => "refused",
        }
    }

    #[test]
    fn each_action_is_its_attempt() {
        let default = StatusTable::default();
        assert_eq!(attempt(204, &default), "ack");
        assert_eq!(attempt(403, &default), "retry");
        assert_eq!(attempt(413, &default), "too-large");
        assert_eq!(attempt(422, &default), "refused");
        assert_eq!(attempt(201, &table(&[200], &[], &[])), "refused");
        assert_eq!(attempt(201, &table(&[200, 201], &[], &[])), "ack");
    }

    fn one_line(reason: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        proptest::prop_assert!(!reason.contains(['\n', '\r']) && !reason.contains("<html"), "reason not one sanitized line: {reason:?}");
        proptest::prop_assert!(reason.chars().count() <= 220, "reason too long: {} characters", reason.chars().count());
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any status, any headers (odd `Retry-After` values above all),
        /// any body bytes: a classification, never a panic, and reasons on one
        /// short line.
        #[test]
        fn any_answer_is_classified_with_a_one_line_reason(
            code in 100u16..1000,
            retry_after in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
            retry_after_text in proptest::option::of("[0-9 +-.eE]{0,30}|[a-zA-Z, :0-9]{0,40}"),
            other in proptest::collection::vec(("[a-z][a-z0-9-]{0,20}", proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 0..4),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            html in proptest::bool::ANY,
            success in proptest::collection::vec(100u16..1000, 0..3),
        ) {
            let status = StatusCode::from_u16(code).expect("100..1000 is a status");
            let mut headers = HeaderMap::new();
            for (name, value) in other {
                if let (Ok(name), Ok(value)) = (hyper::header::HeaderName::try_from(name), hyper::header::HeaderValue::from_bytes(&value)) {
                    headers.append(name, value);
                }
            }
            for value in retry_after.into_iter().chain(retry_after_text.map(String::into_bytes)) {
                if let Ok(value) = hyper::header::HeaderValue::from_bytes(&value) {
                    headers.append(RETRY_AFTER, value);
                }
            }
            let body = if html { [b"<html>".as_slice(), &body].concat() } else { body };
            let table = StatusTable { success: success.clone(), ..StatusTable::default() };
            match classify(status, &headers, &body, &table) {
                Attempt::Acknowledged => {
                    let listed = if success.is_empty() { status.is_success() } else { success.contains(&code) };
                    proptest::prop_assert!(listed, "HTTP {code} acknowledged with success {success:?}");
                }
                Attempt::TooLarge => proptest::prop_assert_eq!(code, 413),
                Attempt::Retry { reason, after } => {
                    one_line(&reason)?;
                    proptest::prop_assert!(![413, 422].contains(&code), "HTTP {code} retried");
                    if code != 429 && code < 500 {
                        proptest::prop_assert!(after.is_none());
                    }
                }
                Attempt::Refused { reason } => {
                    one_line(&reason)?;
                    proptest::prop_assert!(code == 400 || code == 422 || status.is_success(), "HTTP {code} dead-lettered");
                }
            }
        }
    }

    #[test]
    fn retry_after_and_sanitized_body_excerpts_are_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, b"", &StatusTable::default()),
            Attempt::Retry { reason: "HTTP 429 Too Many Requests".into(), after: Some(Duration::from_secs(7)) }
        );
        let refused = classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"bad\nevent  here\x1b[31m", &StatusTable::default());
        assert_eq!(refused, Attempt::Refused { reason: "HTTP 400 Bad Request: bad event here[31m".into() });
        let page = classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), NO_CERTIFICATE, &StatusTable::default());
        assert_eq!(
            page,
            Attempt::Retry {
                reason: "HTTP 400 Bad Request: 400 No required SSL certificate was sent 400 Bad Request No required SSL certificate was sent nginx".into(),
                after: None
            }
        );
        let long = "x".repeat(10_000);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), 2 + EXCERPT_CHARS);
    }
}
