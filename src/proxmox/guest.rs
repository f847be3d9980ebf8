//! What the QEMU guest agent reports, as `qm guest cmd N network-get-interfaces` prints it:
//! a JSON array of interfaces, each with `name` and `ip-addresses`
//! (`ip-address`, `ip-address-type`, `prefix`).

use std::net::Ipv4Addr;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Interface {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "ip-addresses")]
    ip_addresses: Vec<IpAddress>,
}

#[derive(Debug, Deserialize)]
struct IpAddress {
    #[serde(rename = "ip-address")]
    ip_address: String,
    #[serde(default, rename = "ip-address-type")]
    ip_address_type: String,
}

/// The first IPv4 address of the guest that another machine could reach: not loopback, not
/// link-local, not unspecified. `None` when the guest has none yet (DHCP still running) or
/// the output is not the agent's JSON.
#[must_use]
pub(crate) fn first_ipv4(json: &str) -> Option<Ipv4Addr> {
    let interfaces: Vec<Interface> = serde_json::from_str(json).ok()?;
    interfaces.iter().filter(|i| i.name != "lo").flat_map(|i| &i.ip_addresses).find_map(|a| {
        if a.ip_address_type != "ipv4" {
            return None;
        }
        let ip: Ipv4Addr = a.ip_address.parse().ok()?;
        (!ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified()).then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Abridged from a Proxmox VE 8 node (`qm guest cmd 283 network-get-interfaces`).
    const AGENT: &str = r#"[
   {
      "hardware-address" : "00:00:00:00:00:00",
      "ip-addresses" : [
         { "ip-address" : "127.0.0.1", "ip-address-type" : "ipv4", "prefix" : 8 },
         { "ip-address" : "::1", "ip-address-type" : "ipv6", "prefix" : 128 }
      ],
      "name" : "lo",
      "statistics" : { "rx-bytes" : 1520, "rx-dropped" : 0, "rx-errs" : 0, "rx-packets" : 16 }
   },
   {
      "hardware-address" : "bc:24:11:5e:4a:01",
      "ip-addresses" : [
         { "ip-address" : "fe80::be24:11ff:fe5e:4a01", "ip-address-type" : "ipv6", "prefix" : 64 },
         { "ip-address" : "192.168.1.83", "ip-address-type" : "ipv4", "prefix" : 24 }
      ],
      "name" : "ens18"
   }
]"#;

    #[test]
    fn the_first_reachable_ipv4_is_taken() {
        assert_eq!(first_ipv4(AGENT), Some(Ipv4Addr::new(192, 168, 1, 83)));
    }

    #[test]
    fn no_address_yet_is_none() {
        assert_eq!(
            first_ipv4(r#"[{"name":"lo","ip-addresses":[{"ip-address":"127.0.0.1","ip-address-type":"ipv4"}]},{"name":"ens18"}]"#),
            None
        );
        assert_eq!(first_ipv4(r#"[{"name":"ens18","ip-addresses":[{"ip-address":"169.254.3.4","ip-address-type":"ipv4"}]}]"#), None);
        assert_eq!(first_ipv4("QEMU guest agent is not running"), None);
    }
}
