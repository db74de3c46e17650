//! The host and port of a service URL, read and replaced without touching anything else in it.
//!
//! Hand-written rather than `url::Url`: NATS accepts `host:port` without a scheme (which `Url`
//! reads as a scheme named after the host), and a rewritten URL must keep credentials, database
//! and query byte for byte, percent-encoding included.

/// A URL split around its authority. Only the first URL of a comma-separated list is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `postgres`, `nats`, `tls`, ...; empty when the URL has none.
    pub scheme: String,
    /// `user:password` as written (still percent-encoded), without the `@`.
    pub userinfo: Option<String>,
    /// Without brackets for IPv6; empty when the URL names no host.
    pub host: String,
    pub port: u16,
    /// Path, query and fragment, verbatim.
    pub rest: String,
    /// Everything before `rest`, verbatim.
    head: String,
}

impl Endpoint {
    pub fn parse(url: &str, default_port: u16) -> anyhow::Result<Self> {
        let url = url.split(',').next().unwrap_or_default().trim();
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.to_owned(), rest),
            None => (String::new(), url),
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        // A password may contain `@` unencoded; the host never does.
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo.to_owned()), hostport),
            None => (None, authority),
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| anyhow::anyhow!("unclosed `[` in {url}"))?;
            (host, after.strip_prefix(':').unwrap_or(after))
        } else {
            match hostport.split_once(':') {
                Some((host, port)) => (host, port),
                None => (hostport, ""),
            }
        };
        let port = if port.is_empty() {
            default_port
        } else {
            port.parse()
                .map_err(|_| anyhow::anyhow!("cannot parse the port of {url}"))?
        };
        Ok(Self {
            scheme,
            userinfo,
            host: host.to_owned(),
            port,
            rest: tail.to_owned(),
            head: url[..url.len() - tail.len()].to_owned(),
        })
    }

    /// `host:port` for messages, `localhost` when the URL names no host.
    pub fn display(&self) -> String {
        format!("{}:{}", bracketed(self.host_or_localhost()), self.port)
    }

    pub fn host_or_localhost(&self) -> &str {
        if self.host.is_empty() {
            "localhost"
        } else {
            &self.host
        }
    }

    /// Throwaway services only stand in for this machine's addresses.
    pub fn is_local(&self) -> bool {
        let host = self.host.as_str();
        host.is_empty()
            || host == "localhost"
            || host.starts_with("127.")
            || matches!(host, "::1" | "0.0.0.0" | "::")
    }

    /// The URL with this host and port, everything else as it was.
    pub fn with_host_port(&self, host: &str, port: u16) -> String {
        let scheme = if self.scheme.is_empty() {
            String::new()
        } else {
            format!("{}://", self.scheme)
        };
        let userinfo = self
            .userinfo
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}{userinfo}{}:{port}{}", bracketed(host), self.rest)
    }

    /// The URL naming another database, its query kept (Postgres URLs).
    pub fn with_database(&self, database: &str) -> String {
        let query = self
            .rest
            .find(['?', '#'])
            .map(|i| &self.rest[i..])
            .unwrap_or_default();
        format!("{}/{database}{query}", self.head)
    }

    /// The database a Postgres URL names, if any.
    pub fn database(&self) -> Option<&str> {
        let path = self.rest.strip_prefix('/')?;
        let name = path.split(['?', '#']).next().unwrap_or_default();
        (!name.is_empty()).then_some(name)
    }

    /// The user name a URL carries, if any.
    pub fn user(&self) -> Option<&str> {
        let userinfo = self.userinfo.as_deref()?;
        let user = userinfo.split(':').next().unwrap_or_default();
        (!user.is_empty()).then_some(user)
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Endpoint;

    #[test]
    fn a_postgres_url_splits_into_its_parts() {
        let e = Endpoint::parse(
            "postgres://app:s3cr%40t@db.example:6543/chronicle?sslmode=require",
            5432,
        )
        .unwrap();

        assert_eq!(e.scheme, "postgres");
        assert_eq!(e.userinfo.as_deref(), Some("app:s3cr%40t"));
        assert_eq!(e.host, "db.example");
        assert_eq!(e.port, 6543);
        assert_eq!(e.rest, "/chronicle?sslmode=require");
        assert_eq!(e.user(), Some("app"));
        assert_eq!(e.database(), Some("chronicle"));
        assert!(!e.is_local());
    }

    #[test]
    fn a_missing_port_is_the_default_and_a_missing_scheme_is_kept_missing() {
        let e = Endpoint::parse("localhost", 4222).unwrap();

        assert_eq!(
            (e.scheme.as_str(), e.host.as_str(), e.port),
            ("", "localhost", 4222)
        );
        assert_eq!(e.with_host_port("127.0.0.1", 4300), "127.0.0.1:4300");
    }

    #[test]
    fn only_the_first_of_a_comma_list_counts() {
        let e = Endpoint::parse("nats://127.0.0.1:4222,nats://10.0.0.2:4222", 4222).unwrap();

        assert_eq!(e.display(), "127.0.0.1:4222");
        assert!(e.is_local());
    }

    #[test]
    fn ipv6_hosts_are_bracketed_again_when_written() {
        let e = Endpoint::parse("nats://[::1]:4223", 4222).unwrap();

        assert_eq!(e.host, "::1");
        assert!(e.is_local());
        assert_eq!(e.display(), "[::1]:4223");
        assert_eq!(e.with_host_port("::1", 4300), "nats://[::1]:4300");
    }

    #[test]
    fn an_unencoded_at_in_the_password_stays_in_the_userinfo() {
        let e = Endpoint::parse("nats://user:p@ss@127.0.0.1:4222", 4222).unwrap();

        assert_eq!(e.userinfo.as_deref(), Some("user:p@ss"));
        assert_eq!(e.host, "127.0.0.1");
    }

    #[test]
    fn rewriting_the_port_keeps_credentials_database_and_query() {
        let url = "postgres://app:pw@localhost:5432/chronicle?sslmode=disable";

        let moved = Endpoint::parse(url, 5432)
            .unwrap()
            .with_host_port("127.0.0.1", 25432);

        assert_eq!(
            moved,
            "postgres://app:pw@127.0.0.1:25432/chronicle?sslmode=disable"
        );
    }

    #[test]
    fn the_maintenance_url_names_the_postgres_database_and_keeps_the_query() {
        let e = Endpoint::parse(
            "postgres://postgres@127.0.0.1:5432/chronicle?sslmode=disable",
            5432,
        )
        .unwrap();

        assert_eq!(
            e.with_database("postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
        );
    }

    #[test]
    fn a_url_without_host_is_local_and_shown_as_localhost() {
        let e = Endpoint::parse("postgres:///chronicle?host=/run/postgresql", 5432).unwrap();

        assert_eq!(e.host, "");
        assert!(e.is_local());
        assert_eq!(e.display(), "localhost:5432");
        assert_eq!(
            e.with_database("postgres"),
            "postgres:///postgres?host=/run/postgresql"
        );
    }

    #[test]
    fn a_port_that_is_not_a_number_is_an_error() {
        assert!(Endpoint::parse("postgres://h:abc/db", 5432).is_err());
        assert!(Endpoint::parse("nats://[::1", 4222).is_err());
    }
}
