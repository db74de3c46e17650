//! Which IP addresses are on the public unicast internet, after the IANA special-purpose registries.
//!
//! A webhook may only reach such an address: anything else is a way into the server's own
//! networks (SSRF). The lists follow the IANA IPv4 and IPv6 special-purpose address registries
//! (plus multicast and the reserved 240/4); a block is refused even where the registry calls it
//! globally reachable (AS112, AMT, anycast relays), since no webhook receiver lives there.
//! IPv6 is allowed only inside global unicast 2000::/3, and addresses that embed an IPv4
//! address (6to4, NAT64) are judged by that address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Why an address is not public: the name of the block it is in.
pub type Block = &'static str;

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(a: u16, b: u16, c: u16, d: u16, len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0), len)
}

/// IPv4 blocks that are not public unicast, most specific first where they nest.
const IPV4_BLOCKS: &[(Ipv4Net, Block)] = &[
    (v4(0, 0, 0, 0, 8), "\"this network\" (0.0.0.0/8)"),
    (v4(10, 0, 0, 0, 8), "private (10.0.0.0/8)"),
    (
        v4(100, 64, 0, 0, 10),
        "shared address space (100.64.0.0/10)",
    ),
    (v4(127, 0, 0, 0, 8), "loopback (127.0.0.0/8)"),
    (v4(169, 254, 0, 0, 16), "link-local (169.254.0.0/16)"),
    (v4(172, 16, 0, 0, 12), "private (172.16.0.0/12)"),
    (
        v4(192, 0, 0, 0, 24),
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    (v4(192, 0, 2, 0, 24), "documentation (192.0.2.0/24)"),
    (v4(192, 31, 196, 0, 24), "AS112 (192.31.196.0/24)"),
    (v4(192, 52, 193, 0, 24), "AMT (192.52.193.0/24)"),
    (
        v4(192, 88, 99, 0, 24),
        "6to4 relay anycast (192.88.99.0/24)",
    ),
    (v4(192, 168, 0, 0, 16), "private (192.168.0.0/16)"),
    (
        v4(192, 175, 48, 0, 24),
        "AS112 direct delegation (192.175.48.0/24)",
    ),
    (v4(198, 18, 0, 0, 15), "benchmarking (198.18.0.0/15)"),
    (v4(198, 51, 100, 0, 24), "documentation (198.51.100.0/24)"),
    (v4(203, 0, 113, 0, 24), "documentation (203.0.113.0/24)"),
    (v4(224, 0, 0, 0, 4), "multicast (224.0.0.0/4)"),
    (v4(255, 255, 255, 255, 32), "broadcast (255.255.255.255)"),
    (v4(240, 0, 0, 0, 4), "reserved (240.0.0.0/4)"),
];

/// IPv6 blocks inside 2000::/3 that are not public unicast (everything outside 2000::/3 is
/// refused by [`ipv6_block`] itself, after the blocks that embed IPv4 are looked into).
const IPV6_GLOBAL_BLOCKS: &[(Ipv6Net, Block)] = &[
    (v6(0x2001, 0, 0, 0, 32), "Teredo (2001::/32)"),
    (v6(0x2001, 0xdb8, 0, 0, 32), "documentation (2001:db8::/32)"),
    (
        v6(0x2001, 0, 0, 0, 23),
        "IETF protocol assignments (2001::/23)",
    ),
    (
        v6(0x2620, 0x4f, 0x8000, 0, 48),
        "AS112 direct delegation (2620:4f:8000::/48)",
    ),
    (v6(0x3fff, 0, 0, 0, 20), "documentation (3fff::/20)"),
];

const GLOBAL_UNICAST: Ipv6Net = v6(0x2000, 0, 0, 0, 3);
const NAT64: Ipv6Net = v6(0x64, 0xff9b, 0, 0, 96);
const NAT64_LOCAL: Ipv6Net = v6(0x64, 0xff9b, 1, 0, 48);
const SIX_TO_FOUR: Ipv6Net = v6(0x2002, 0, 0, 0, 16);

fn ipv4_block(ip: Ipv4Addr) -> Option<Block> {
    IPV4_BLOCKS
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, block)| *block)
}

fn ipv6_block(ip: Ipv6Addr) -> Option<Block> {
    let segments = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // Some stacks connect to the IPv4 address inside these; none is a webhook receiver's.
    if segments[..5] == [0; 5] && segments[5] == 0xffff {
        return Some("IPv4-mapped (::ffff:0:0/96)");
    }
    if segments[..6] == [0; 6] {
        return Some("IPv4-compatible (::/96)");
    }
    if NAT64.contains(&ip) {
        let embedded = Ipv4Addr::from(u128::from(ip) as u32);
        return ipv4_block(embedded).map(|_| "NAT64 (64:ff9b::/96) of a non-public IPv4 address");
    }
    if NAT64_LOCAL.contains(&ip) {
        // Local-use translation (RFC 8215) is by definition not the public internet.
        return Some("local-use NAT64 (64:ff9b:1::/48)");
    }
    if SIX_TO_FOUR.contains(&ip) {
        let embedded = Ipv4Addr::new(
            (segments[1] >> 8) as u8,
            segments[1] as u8,
            (segments[2] >> 8) as u8,
            segments[2] as u8,
        );
        return ipv4_block(embedded).map(|_| "6to4 (2002::/16) of a non-public IPv4 address");
    }
    if !GLOBAL_UNICAST.contains(&ip) {
        return Some(match segments[0] {
            s if s & 0xff00 == 0xff00 => "multicast (ff00::/8)",
            s if s & 0xfe00 == 0xfc00 => "unique-local (fc00::/7)",
            s if s & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
            s if s & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
            _ => "outside global unicast (2000::/3)",
        });
    }
    IPV6_GLOBAL_BLOCKS
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, block)| *block)
}

/// The special-purpose block an address is in, or `None` when it is public unicast.
pub fn non_public(ip: IpAddr) -> Option<Block> {
    match ip {
        IpAddr::V4(v4) => ipv4_block(v4),
        IpAddr::V6(v6) => ipv6_block(v6),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_special_purpose_address_is_refused_and_public_ones_pass() {
        let refused = [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.0.170",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.168.1.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::8.8.8.8",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::",
            "2620:4f:8000::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            "ff0e::1",
        ];
        for address in refused {
            let ip: IpAddr = address.parse().unwrap();
            assert!(non_public(ip).is_some(), "{address} must be refused");
        }
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ];
        for address in public {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(non_public(ip), None, "{address} is public");
        }
    }

    #[test]
    fn the_reason_names_the_block() {
        let reason = |a: &str| non_public(a.parse().unwrap()).unwrap();
        assert!(reason("127.0.0.1").contains("loopback"));
        assert!(reason("::127.0.0.1").contains("IPv4-compatible"));
        assert!(reason("2002:7f00:1::").contains("6to4"));
        assert!(reason("64:ff9b::7f00:1").contains("NAT64"));
        assert!(reason("fec0::1").contains("site-local"));
        assert!(reason("198.18.0.1").contains("benchmarking"));
        assert!(reason("240.0.0.1").contains("reserved"));
        assert!(reason("2001::1").contains("Teredo"));
    }
}
