//! `ADDR[:PORT]` arguments for the commands that reach a host. The address ends up in the
//! argv of `ssh`/`ssh-keyscan`, so it is validated strictly: an IP address or a DNS name,
//! never something that starts with '-' or holds shell or option syntax.

use std::fmt;
use std::net::IpAddr;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to 22.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the value.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::Usage(format!("address `{s}` is invalid: {why}; use HOST, HOST:PORT or [IPv6]:PORT"));
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after ']'")),
            };
            h.parse::<std::net::Ipv6Addr>().map_err(|_| bad("not an IPv6 address inside [ ]"))?;
            (h.to_string(), port)
        } else if s.parse::<IpAddr>().is_ok() {
            (s.to_string(), None)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (s.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
            None => 22,
        };
        if host.parse::<IpAddr>().is_err() && !is_dns_name(&host) {
            return Err(bad("not an IP address or DNS name"));
        }
        Ok(Self { host, port })
    }

    /// The form `ssh-keyscan`/known_hosts use: `host` on port 22, `[host]:port` otherwise.
    #[must_use]
    pub fn known_hosts_form(&self) -> String {
        if self.port == 22 { self.host.clone() } else { format!("[{}]:{}", self.host, self.port) }
    }
}

/// A DNS name: dot-separated RFC 1123 labels, at most 253 bytes.
#[must_use]
pub(crate) fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') { write!(f, "[{}]:{}", self.host, self.port) } else { write!(f, "{}:{}", self.host, self.port) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(Address::parse("10.0.0.5").expect("ok"), Address { host: "10.0.0.5".into(), port: 22 });
        assert_eq!(Address::parse("127.0.0.1:2222").expect("ok").port, 2222);
        assert_eq!(Address::parse("web01.example.com").expect("ok").host, "web01.example.com");
        assert_eq!(Address::parse("[::1]:2222").expect("ok"), Address { host: "::1".into(), port: 2222 });
        assert_eq!(Address::parse("::1").expect("ok").host, "::1");
        assert_eq!(Address::parse("[::1]:2222").expect("ok").known_hosts_form(), "[::1]:2222");
    }

    #[test]
    fn refuses_option_and_shell_syntax() {
        for bad in ["-oProxyCommand=x", "a b", "a;b", "host:0", "host:99999", "[::1", "x:y", ""] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
