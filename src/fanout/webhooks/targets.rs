//! Which URLs a webhook may call. Private, loopback and link-local targets are refused unless
//! allowed: otherwise a webhook is a way to make the server call into its own network (SSRF).
//! Checked when an endpoint is saved and again at each delivery, since DNS can change.

use std::net::IpAddr;

use reqwest::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("must be an http or https URL")]
    NotHttp,
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("resolves to a private, loopback or link-local address")]
    Private,
}

pub fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 0
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(&IpAddr::V4(v4)))
        }
    }
}

pub fn parse(url: &str) -> Result<Url, TargetError> {
    let parsed = Url::parse(url).map_err(|_| TargetError::NotHttp)?;
    match (parsed.scheme(), parsed.host_str()) {
        ("http" | "https", Some(host)) if !host.is_empty() => Ok(parsed),
        _ => Err(TargetError::NotHttp),
    }
}

/// Resolves the URL's host and refuses it if any address is private (unless allowed).
pub async fn check(url: &str, allow_private: bool) -> Result<Url, TargetError> {
    let parsed = parse(url)?;
    if allow_private {
        return Ok(parsed);
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| TargetError::Unresolvable)?
            .map(|a| a.ip())
            .collect(),
    };
    if addresses.is_empty() {
        return Err(TargetError::Unresolvable);
    }
    if addresses.iter().any(is_private) {
        return Err(TargetError::Private);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn private_loopback_and_link_local_targets_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1/hook",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://localhost:8080/",
        ] {
            assert_eq!(
                check(url, false).await.err(),
                Some(TargetError::Private),
                "{url}"
            );
            assert!(
                check(url, true).await.is_ok(),
                "{url} allowed when private targets are"
            );
        }
        assert!(check("http://93.184.216.34/", false).await.is_ok());
        assert_eq!(
            check("ftp://example.com/", true).await.err(),
            Some(TargetError::NotHttp)
        );
        assert_eq!(
            check("not a url", true).await.err(),
            Some(TargetError::NotHttp)
        );
    }
}
