//! Which URLs a webhook may call, and the HTTP client that calls only those.
//!
//! Unless private targets are allowed, a URL whose host is or resolves to any address outside
//! the public unicast internet is refused (see [`addresses`]): otherwise a webhook is a way to
//! make the server call into its own network (SSRF). Checked when an endpoint is saved, and
//! again by the delivery client itself: its resolver looks each name up once and hands the
//! connector only the addresses it checked, so a name cannot pass the check with one answer and
//! be connected to with another (DNS rebinding).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::fanout::webhooks::addresses::{self, Block};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("must be an http or https URL")]
    NotHttp,
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("the host is or resolves to {address}, which is {block}, not a public address")]
    NotPublic { address: IpAddr, block: Block },
}

pub fn parse(url: &str) -> Result<Url, TargetError> {
    let parsed = Url::parse(url).map_err(|_| TargetError::NotHttp)?;
    match (parsed.scheme(), parsed.host_str()) {
        ("http" | "https", Some(host)) if !host.is_empty() => Ok(parsed),
        _ => Err(TargetError::NotHttp),
    }
}

fn public(ip: IpAddr) -> Result<IpAddr, TargetError> {
    match addresses::non_public(ip) {
        Some(block) => Err(TargetError::NotPublic { address: ip, block }),
        None => Ok(ip),
    }
}

/// The URL's host when it is an IP address (the URL parser has already turned forms such as
/// `0x7f.1` or `2130706433` into dotted IPv4). The HTTP client connects to such a host without
/// asking the resolver, so it is checked here.
fn literal(url: &Url) -> Option<IpAddr> {
    url.host_str()?.trim_matches(['[', ']']).parse().ok()
}

/// Refuses a URL whose host is a non-public IP address; names are left to the resolver.
pub fn check_literal(url: &Url) -> Result<(), TargetError> {
    literal(url).map_or(Ok(()), |ip| public(ip).map(|_| ()))
}

/// Looks a name up once and refuses it if any of its addresses is not public, so no answer
/// among several can point inside.
pub async fn resolve_public(host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| TargetError::Unresolvable)?
        .collect();
    if found.is_empty() {
        return Err(TargetError::Unresolvable);
    }
    for address in &found {
        public(address.ip())?;
    }
    Ok(found)
}

/// Checks a URL when an endpoint is saved: its host must be, or resolve only to, public addresses
/// (unless allowed).
pub async fn check(url: &str, allow_private: bool) -> Result<Url, TargetError> {
    let parsed = parse(url)?;
    if allow_private {
        return Ok(parsed);
    }
    if literal(&parsed).is_some() {
        check_literal(&parsed)?;
    } else {
        let host = parsed.host_str().unwrap_or_default();
        resolve_public(host, parsed.port_or_known_default().unwrap_or(80)).await?;
    }
    Ok(parsed)
}

/// The delivery client's resolver: what it returns is what the connector dials.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the client puts the URL's port in.
            let found = resolve_public(&host, 0).await?;
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// The client that sends deliveries: no redirects (a 3xx could point anywhere), no proxy from
/// the environment (it would resolve the target itself), and unless private targets are
/// allowed, names resolved only through [`PublicOnly`].
pub fn client(allow_private: bool, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(PublicOnly))
    };
    builder.build()
}

/// The refusal behind a failed request, when the resolver refused the target.
pub fn refusal(error: &reqwest::Error) -> Option<TargetError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<TargetError>() {
            return Some(refused.clone());
        }
        source = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn non_public_targets_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1/hook",
            "http://0x7f.1/hook",
            "http://2130706433/hook",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://198.18.0.1/",
            "http://240.0.0.1/",
            "http://[::1]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[2001::1]/",
            "http://[fec0::1]/",
            "http://[fe80::1]/",
            "http://localhost:8080/",
        ] {
            assert!(
                matches!(check(url, false).await, Err(TargetError::NotPublic { .. })),
                "{url}"
            );
            assert!(
                check(url, true).await.is_ok(),
                "{url} allowed when private targets are"
            );
        }
        assert!(check("http://93.184.216.34/", false).await.is_ok());
        assert!(check("http://[2606:4700:4700::1111]/", false).await.is_ok());
        assert_eq!(
            check("ftp://example.com/", true).await.err(),
            Some(TargetError::NotHttp)
        );
        assert_eq!(
            check("not a url", true).await.err(),
            Some(TargetError::NotHttp)
        );
    }

    #[tokio::test]
    async fn the_delivery_client_does_not_connect_to_a_name_that_resolves_inside() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = client(false, Duration::from_secs(5)).unwrap();

        let error = client
            .post(format!("http://localhost:{port}/hook"))
            .send()
            .await
            .unwrap_err();
        // A connection would have been made before the request failed, so it would be
        // waiting in the backlog now.
        let accepted = listener.accept();

        assert!(
            matches!(refusal(&error), Some(TargetError::NotPublic { .. })),
            "{error:?}"
        );
        assert_eq!(
            accepted.map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "no connection reached the listener"
        );
    }
}
