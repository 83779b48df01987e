//! Stand-ins for the peers ferry talks to, faithful to the behaviour that
//! matters to ferry, over real sockets and real TLS. `ferry demo` and the
//! tests use them; an operator can use them to try a config without a
//! cluster.

pub mod logstash;
pub mod teleport;
