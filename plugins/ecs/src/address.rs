//! Teleport's network addresses (`addr.remote`, `addr.local`) split into
//! the parts ECS stores apart.

use std::net::{IpAddr, SocketAddr};

/// One address as ECS's `source` or `destination` fields hold it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Address<'a> {
    /// The IP, when the host part is one.
    pub(crate) ip: Option<IpAddr>,
    /// The host name, when the host part is not an IP.
    pub(crate) domain: Option<&'a str>,
    /// The port, when one was given.
    pub(crate) port: Option<u16>,
}

/// Splits `ip:port`, `[ipv6]:port`, a bare IPv4 or IPv6 address, `[ipv6]`,
/// `host:port` or a bare host name. Text with whitespace, or empty, is none
/// of these and gives `None`.
pub(crate) fn split(text: &str) -> Option<Address<'_>> {
    if text.is_empty() || text.contains(char::is_whitespace) {
        return None;
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(Address { ip: Some(socket.ip()), domain: None, port: Some(socket.port()) });
    }
    let bare = text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(text);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(Address { ip: Some(ip), domain: None, port: None });
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse::<u16>().ok()?)),
        None => (text, None),
    };
    if host.is_empty() || host.contains([':', '[', ']', '/']) {
        return None;
    }
    Some(Address { ip: None, domain: Some(host), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("test IP"))
    }

    #[test]
    fn the_shapes_teleport_writes() {
        assert_eq!(split("172.10.1.254:46992"), Some(Address { ip: ip("172.10.1.254"), domain: None, port: Some(46992) }));
        assert_eq!(split("[::1]:43026"), Some(Address { ip: ip("::1"), domain: None, port: Some(43026) }));
        assert_eq!(split("[2001:db8::7]:22"), Some(Address { ip: ip("2001:db8::7"), domain: None, port: Some(22) }));
        assert_eq!(split("2001:db8::7"), Some(Address { ip: ip("2001:db8::7"), domain: None, port: None }));
        assert_eq!(split("[fe80::1]"), Some(Address { ip: ip("fe80::1"), domain: None, port: None }));
        assert_eq!(split("10.0.0.1"), Some(Address { ip: ip("10.0.0.1"), domain: None, port: None }));
        assert_eq!(
            split("ec2-54-162-177-255.compute-1.amazonaws.com:3389"),
            Some(Address { ip: None, domain: Some("ec2-54-162-177-255.compute-1.amazonaws.com"), port: Some(3389) })
        );
        assert_eq!(split("bastion"), Some(Address { ip: None, domain: Some("bastion"), port: None }));
    }

    #[test]
    fn odd_text_is_no_address() {
        for text in ["", " ", "a b:1", "host:port", "host:99999", ":22", "[::1", "::1]:22:7", "http://x:1"] {
            assert_eq!(split(text), None, "{text:?}");
        }
    }
}
