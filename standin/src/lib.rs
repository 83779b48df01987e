//! Stand-ins for the peers ferry talks to, faithful to the behaviour that
//! matters to ferry, over real sockets and real TLS. `ferry demo` and the
//! tests use them; an operator can use them to try a config without a
//! cluster.
//!
//! They are a crate of their own, apart from ferry, so that they play the
//! other side honestly: nothing here comes from ferry (their TLS, identity
//! file writer and certificate reading are their own), and ferry's library
//! ships no test machinery. What only tests need — making a peer misbehave —
//! is the `faults` feature, nginx as a real peer the `nginx` feature, and a
//! throwaway PostgreSQL server the `postgres` feature, which ferry enables in
//! its dev-dependencies only.
#![deny(missing_docs)]

pub mod logstash;
#[cfg(feature = "nginx")]
pub mod nginx;
pub mod pki;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod proxy;
pub mod teleport;
mod tls;
