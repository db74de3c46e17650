//! Service URLs from the configuration: `NATS_URL` taken apart into servers and credentials,
//! and URLs with their secrets masked for logs and error messages.

use std::str::FromStr;

use async_nats::ServerAddr;
use percent_encoding::percent_decode_str;

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    UserPassword(String, String),
    Token(String),
}

/// `NATS_URL` taken apart: the servers (a comma-separated list, as NATS tools accept) without
/// their credentials, and the credentials.
#[derive(Clone)]
pub struct NatsUrl {
    pub servers: Vec<ServerAddr>,
    pub auth: Auth,
}

fn decode(part: &str) -> Result<String, String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "credentials are not UTF-8 once percent-decoded".to_owned())
}

impl FromStr for NatsUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let mut servers = Vec::new();
        let mut auth = Auth::None;
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let server = ServerAddr::from_str(entry).map_err(|e| e.to_string())?;
            let found = match (server.username(), server.password()) {
                (Some(user), Some(password)) => {
                    Auth::UserPassword(decode(user)?, decode(password)?)
                }
                (Some(token), None) => Auth::Token(decode(token)?),
                _ => Auth::None,
            };
            if found != Auth::None {
                if auth != Auth::None && auth != found {
                    return Err("the servers carry different credentials".into());
                }
                auth = found;
            }
            let mut bare = server.into_inner();
            // Only fails for URLs without a host, which ServerAddr has refused already.
            let _ = bare.set_username("");
            let _ = bare.set_password(None);
            servers.push(ServerAddr::from_str(bare.as_str()).map_err(|e| e.to_string())?);
        }
        if servers.is_empty() {
            return Err("no server given".into());
        }
        Ok(Self { servers, auth })
    }
}

/// The URL with any credentials replaced by `***`, for logs and messages.
pub fn redacted(raw: &str) -> String {
    raw.split(',')
        .map(|entry| match entry.rsplit_once('@') {
            Some((before, host)) => match before.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://***@{host}"),
                None => format!("***@{host}"),
            },
            None => entry.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn credentials_come_out_of_the_url_and_the_servers_keep_their_scheme() {
        let user: NatsUrl = "nats://chronicle:p%40ss@127.0.0.1:4222".parse().unwrap();
        let token: NatsUrl = "tls://s3cr3t@nats.example.com".parse().unwrap();
        let plain: NatsUrl = "nats://a:4222, nats://b:4222".parse().unwrap();

        assert!(user.auth == Auth::UserPassword("chronicle".into(), "p@ss".into()));
        assert_eq!(user.servers[0].as_url_str(), "nats://127.0.0.1:4222");
        assert!(token.auth == Auth::Token("s3cr3t".into()));
        assert!(token.servers[0].tls_required());
        assert!(!token.servers[0].as_url_str().contains("s3cr3t"));
        assert!(plain.auth == Auth::None);
        assert_eq!(plain.servers.len(), 2);
        assert!("http://x".parse::<NatsUrl>().is_err());
        assert!("nats://a:b@x,nats://c:d@y".parse::<NatsUrl>().is_err());
    }

    #[test]
    fn redaction_hides_user_password_and_token() {
        assert_eq!(
            redacted("nats://u:p@h:4222,tls://t@h2"),
            "nats://***@h:4222,tls://***@h2"
        );
        assert_eq!(redacted("nats://h:4222"), "nats://h:4222");
    }
}
