//! The stand-in Logstash misbehaving, for tests only (the `faults` feature):
//! scripted answers per request, random ones for a share of all requests,
//! and a stall that holds requests unanswered.

use super::{LogstashStandIn, ResetOnPurpose, SeenRequest, Shared, answer, decode, lock, record};
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::Response;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A scripted answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and no events recorded).
    Status(u16),
    /// Answer 429 with a `Retry-After` of this many seconds.
    TooManyRequests(u64),
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Drop the connection without an answer.
    Reset,
    /// Refuse with 400 and this body.
    BadRequest(String),
    /// Answer 503 with a `Retry-After` of this many seconds.
    Unavailable(u64),
    /// Take the events (they are recorded), answer 200, then send a body
    /// that never ends.
    EndlessBody,
    /// Record the events, then drop the connection without answering: the
    /// acknowledgement is lost after the events were stored, so the sender
    /// must send them again.
    AckLost,
    /// Answer with this status and this body (no events recorded), as a
    /// proxy in front of Logstash does: nginx's 403 page, its 400 for a
    /// missing client certificate.
    Answer(u16, String),
}

/// A proxy refusing every request for a while (see
/// [`LogstashStandIn::refuse_for`]).
#[derive(Debug, Clone)]
struct Spell {
    status: u16,
    body: String,
    until: std::time::Instant,
}

/// Random faults: each request that no scripted fault answers fails with
/// probability `rate`, as one of a 500, a 503, a 429 with `Retry-After: 1`,
/// a reset connection or a lost acknowledgement ([`Fault::AckLost`]), in
/// equal shares. The draws come from `seed`, so a run can be replayed as far
/// as the requests arrive in the same order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chaos {
    /// Share of requests that fail, 0.0 to 1.0.
    pub rate: f64,
    /// Seed of the draws.
    pub seed: u64,
}

/// What the random faults did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChaosCount {
    /// Requests answered 500 or 503.
    pub statuses: u64,
    /// Requests answered 429 with `Retry-After: 1`.
    pub throttled: u64,
    /// Connections dropped before the events were stored.
    pub resets: u64,
    /// Connections dropped after the events were stored.
    pub lost_acks: u64,
    /// Events stored by requests whose acknowledgement was lost (scripted
    /// [`Fault::AckLost`] included): each may arrive again.
    pub lost_ack_events: u64,
}

/// The misbehaviour asked for so far.
#[derive(Default)]
pub(super) struct Faults {
    scripted: Mutex<VecDeque<Fault>>,
    stalled: tokio::sync::watch::Sender<bool>,
    waiting: AtomicU64,
    chaos: Mutex<Option<(Chaos, fastrand::Rng)>>,
    chaos_count: Mutex<ChaosCount>,
    spell: Mutex<Option<Spell>>,
}

impl LogstashStandIn {
    /// Queues scripted answers for the next requests, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.shared.faults.scripted).extend(faults);
    }

    /// While stalled, requests are held unanswered, as Logstash does when its
    /// queue is blocked.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.faults.stalled.send_replace(stalled);
    }

    /// Requests being held by a stall right now.
    pub fn held_requests(&self) -> u64 {
        self.shared.faults.waiting.load(Ordering::Relaxed)
    }

    /// Fails a share of the requests from now on (none: stop failing).
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        *lock(&self.shared.faults.chaos) = chaos.map(|chaos| (chaos, fastrand::Rng::with_seed(chaos.seed)));
    }

    /// What the random faults did so far.
    pub fn chaos_count(&self) -> ChaosCount {
        lock(&self.shared.faults.chaos_count).clone()
    }

    /// Answers every request with `status` and `body` for `spell` from now
    /// (no events recorded), then takes them again: a proxy in front of
    /// Logstash with a wrong client certificate, an expired token or a
    /// moved path, until someone fixes it. Scripted faults come first.
    pub fn refuse_for(&self, status: u16, body: &str, spell: Duration) {
        let until = std::time::Instant::now() + spell;
        *lock(&self.shared.faults.spell) = Some(Spell { status, body: body.to_owned(), until });
    }

    /// Ends a spell of [`LogstashStandIn::refuse_for`] now.
    pub fn stop_refusing(&self) {
        *lock(&self.shared.faults.spell) = None;
    }
}

impl Faults {
    /// Holds the request while stalled, then takes its fault: the next
    /// scripted one, else a random one if chaos draws it.
    pub(super) async fn next(&self) -> Option<Fault> {
        let mut stalled = self.stalled.subscribe();
        if *stalled.borrow() {
            self.waiting.fetch_add(1, Ordering::Relaxed);
            let _ = stalled.wait_for(|stalled| !*stalled).await;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        lock(&self.scripted).pop_front().or_else(|| self.spell_fault()).or_else(|| self.chaos_fault())
    }

    /// The answer of a spell of refusals still under way, if any.
    fn spell_fault(&self) -> Option<Fault> {
        let mut spell = lock(&self.spell);
        match spell.as_ref() {
            Some(refusing) if std::time::Instant::now() < refusing.until => Some(Fault::Answer(refusing.status, refusing.body.clone())),
            Some(_) => {
                *spell = None;
                None
            }
            None => None,
        }
    }

    /// The random fault for one request, if it draws one.
    fn chaos_fault(&self) -> Option<Fault> {
        let fault = {
            let mut chaos = lock(&self.chaos);
            let (settings, rng) = chaos.as_mut()?;
            if rng.f64() >= settings.rate {
                return None;
            }
            match rng.u8(0..5) {
                0 => Fault::Status(500),
                1 => Fault::Status(503),
                2 => Fault::TooManyRequests(1),
                3 => Fault::Reset,
                _ => Fault::AckLost,
            }
        };
        let mut count = lock(&self.chaos_count);
        match fault {
            Fault::Status(_) => count.statuses += 1,
            Fault::TooManyRequests(_) => count.throttled += 1,
            Fault::Reset => count.resets += 1,
            _ => count.lost_acks += 1,
        }
        Some(fault)
    }
}

type Answer = Result<Response<BoxBody<Bytes, std::convert::Infallible>>, ResetOnPurpose>;

/// The response `fault` gives to a request whose body is `body` (`None`: too
/// large), or `None` when the request is then handled normally.
pub(super) async fn respond(fault: Fault, seen: &mut SeenRequest, body: Option<&Bytes>, shared: &Shared) -> Option<Answer> {
    let with_retry_after = |code: u16, seconds: u64| {
        let mut response = answer(code, "");
        if let Ok(value) = seconds.to_string().parse() {
            response.headers_mut().insert(hyper::header::RETRY_AFTER, value);
        }
        response
    };
    let response = match (fault, body) {
        (Fault::Reset, _) => return Some(Err(ResetOnPurpose)),
        (Fault::AckLost, Some(body)) => {
            if let Ok(events) = decode(&seen.content_type, &seen.content_encoding, body) {
                lock(&shared.faults.chaos_count).lost_ack_events += events.len() as u64;
                record(shared, events);
            }
            return Some(Err(ResetOnPurpose));
        }
        (Fault::Status(code), _) => answer(code, ""),
        (Fault::TooManyRequests(seconds), _) => with_retry_after(429, seconds),
        (Fault::BadRequest(text), _) => answer(400, &text),
        (Fault::Answer(code, text), _) => answer(code, &text),
        (Fault::Unavailable(seconds), _) => with_retry_after(503, seconds),
        (Fault::EndlessBody, Some(body)) => {
            if let Ok(events) = decode(&seen.content_type, &seen.content_encoding, body) {
                seen.events = events.len();
                record(shared, events);
            }
            lock(&shared.requests).push(seen.clone());
            // "ok", then a byte every 100 ms, for ever.
            let chunks = futures_util::stream::unfold(true, |first| async move {
                if !first {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let data = Bytes::from_static(if first { b"ok" } else { b" " });
                Some((Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(data)), false))
            });
            return Some(Ok(Response::new(http_body_util::StreamBody::new(chunks).boxed())));
        }
        (Fault::Delay(delay), Some(_)) => {
            tokio::time::sleep(delay).await;
            return None;
        }
        // A body too large is answered 413 whatever the fault.
        (Fault::AckLost | Fault::EndlessBody | Fault::Delay(_), None) => return None,
    };
    seen.status = response.status().as_u16();
    lock(&shared.requests).push(seen.clone());
    Some(Ok(response.map(BodyExt::boxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaos_fails_its_share_of_requests_with_every_fault_and_repeats_from_its_seed() {
        let draws = |seed: u64| {
            let faults = Faults::default();
            *lock(&faults.chaos) = Some((Chaos { rate: 0.1, seed }, fastrand::Rng::with_seed(seed)));
            let drawn: Vec<Option<Fault>> = (0..10_000).map(|_| faults.chaos_fault()).collect();
            (drawn, lock(&faults.chaos_count).clone())
        };
        let (faults, count) = draws(7);
        assert_eq!(faults, draws(7).0, "the same seed draws the same faults");
        assert_ne!(faults, draws(8).0);
        let failed = faults.iter().flatten().count();
        assert!((800..=1200).contains(&failed), "{failed} of 10000 failed");
        for kind in [Fault::Status(500), Fault::Status(503), Fault::TooManyRequests(1), Fault::Reset, Fault::AckLost] {
            assert!(faults.contains(&Some(kind.clone())), "{kind:?} never drawn");
        }
        assert_eq!(count.statuses + count.throttled + count.resets + count.lost_acks, failed as u64);
        assert!(Faults::default().chaos_fault().is_none(), "no chaos unless asked for");
    }

    #[test]
    fn a_spell_of_refusals_answers_until_it_ends_and_scripted_faults_come_first() {
        let faults = Faults::default();
        let until = std::time::Instant::now() + Duration::from_secs(3600);
        *lock(&faults.spell) = Some(Spell { status: 403, body: "denied".into(), until });
        assert_eq!(faults.spell_fault(), Some(Fault::Answer(403, "denied".into())));
        assert_eq!(faults.spell_fault(), Some(Fault::Answer(403, "denied".into())), "a spell lasts");
        *lock(&faults.spell) = Some(Spell { status: 403, body: "denied".into(), until: std::time::Instant::now() });
        assert_eq!(faults.spell_fault(), None, "an ended spell answers nothing");
        assert!(lock(&faults.spell).is_none());
    }
}
