//! Typed configuration from the environment (and `.env`), with API.md's names and defaults.

pub mod urls;

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub nats_url: String,
    /// `NATS_CREDS_FILE`: a `.creds` file (user JWT and nkey seed), read at each connect.
    pub nats_creds_file: Option<std::path::PathBuf>,
    pub bind_addr: SocketAddr,
    pub environment: Environment,
    pub jwt_secret: Vec<u8>,
    /// Seals secrets kept at rest; `SECRETS_KEY`, or derived from `JWT_SECRET` when unset.
    pub secrets_key: Vec<u8>,
    /// The key secrets were sealed under before `SECRETS_KEY` changed; at start they are
    /// opened with it and sealed again under the current key.
    pub secrets_key_previous: Option<Vec<u8>>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub cors_allowed_origins: Vec<String>,
    pub rate_limit_per_minute: u32,
    pub auth_rate_limit_per_minute: u32,
    pub trusted_proxies: Vec<String>,
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    pub nats_duplicate_window: Duration,
    pub webhook_retry_schedule: Vec<Duration>,
    pub webhook_allow_private_targets: bool,
    pub webhook_max_in_flight: usize,
    pub log_format: LogFormat,
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub database_max_connections: u32,
    /// How long a client may take to send a complete request head.
    pub header_read_timeout: Duration,
    /// Open connections at most; more wait in the accept queue.
    pub max_connections: usize,
    /// With it set, `/metrics` requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// How long after a rotation the retired refresh token may still be exchanged (zero: never).
    pub refresh_reuse_grace: Duration,
    /// A session ends this long after sign-in, however often it is refreshed.
    pub session_max_age: Duration,
    /// Failed sign-ins per account per 15 minutes before sign-ins to it are refused (0: off).
    pub login_failures_per_account: u32,
    /// How often the operator page's activity sampler records a sample (`/admin/activity`).
    pub activity_sample_interval: Duration,
    pub email: EmailSettings,
}

/// Transactional email (API.md "Email").
#[derive(Clone)]
pub struct EmailSettings {
    /// `SMTP_URL` translated to lettre's connection URL; `None` turns sending off.
    pub smtp_url: Option<String>,
    /// `MAIL_FROM`, a valid mailbox (`Name <addr>` or `addr`).
    pub mail_from: String,
    /// `APP_BASE_URL` without a trailing slash; links in emails start with it.
    pub app_base_url: String,
    /// What link tokens are derived from: the effective `SECRETS_KEY` (derived from
    /// `JWT_SECRET` when unset).
    pub token_secret: Vec<u8>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs and panics.
        f.debug_struct("Config")
            .field("database_url", &self.database_url)
            .field("nats_url", &urls::redacted(&self.nats_url))
            .field("bind_addr", &self.bind_addr)
            .field("environment", &self.environment)
            .field("jwt_secret", &"<redacted>")
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("secrets_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} has an invalid value {value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "JWT_SECRET is required (at least 32 bytes) unless CHRONICLE_ENV=development; \
         generate one with: openssl rand -base64 48"
    )]
    MissingJwtSecret,
    #[error("JWT_SECRET must be at least 32 bytes long (it has {0})")]
    ShortJwtSecret(usize),
    #[error(
        "CHRONICLE_ENV=development uses a public signing key, so it listens on loopback only, \
         and BIND_ADDR={0} is not a loopback address; bind 127.0.0.1 or [::1], or run in \
         production (unset CHRONICLE_ENV and set JWT_SECRET)"
    )]
    DevelopmentNotLoopback(SocketAddr),
    #[error(
        "SECRETS_KEY must be at least 32 bytes long (it has {0}); \
         generate one with: openssl rand -base64 48"
    )]
    ShortSecretsKey(usize),
}

/// A development-only signing key: tokens signed with it are worthless anywhere else.
const DEVELOPMENT_JWT_SECRET: &str = "chronicle-development-secret-do-not-use-in-production";

impl Config {
    /// Reads the process environment (after loading `.env`, which never overrides it).
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable source, so tests need not touch the
    /// process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let environment = match var("CHRONICLE_ENV").as_deref() {
            None | Some("production") => Environment::Production,
            Some("development") | Some("dev") => Environment::Development,
            Some("test") => Environment::Test,
            Some(other) => {
                return Err(invalid(
                    "CHRONICLE_ENV",
                    other,
                    "expected production, development or test",
                ))
            }
        };
        let jwt_secret = match var("JWT_SECRET") {
            Some(secret) if secret.len() >= 32 => secret.into_bytes(),
            Some(secret) => return Err(ConfigError::ShortJwtSecret(secret.len())),
            None if environment == Environment::Development => {
                DEVELOPMENT_JWT_SECRET.as_bytes().to_vec()
            }
            None => return Err(ConfigError::MissingJwtSecret),
        };
        let secrets_key = match var("SECRETS_KEY") {
            Some(key) if key.len() >= 32 => key.into_bytes(),
            Some(key) => return Err(ConfigError::ShortSecretsKey(key.len())),
            None => crate::auth::secrets::derive_secrets_key(&jwt_secret).into_bytes(),
        };
        let log_format = match var("LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            None if environment == Environment::Production => LogFormat::Json,
            None => LogFormat::Pretty,
            Some(other) => return Err(invalid("LOG_FORMAT", other, "expected json or pretty")),
        };
        let nats_url = var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        if let Err(reason) = nats_url.parse::<urls::NatsUrl>() {
            return Err(invalid("NATS_URL", &urls::redacted(&nats_url), &reason));
        }
        let nats_creds_file = var("NATS_CREDS_FILE").map(std::path::PathBuf::from);
        if let Some(path) = &nats_creds_file {
            check_creds_file(path)?;
        }
        let secrets_key_previous = match var("SECRETS_KEY_PREVIOUS") {
            Some(key) if key.len() >= 32 => Some(key.into_bytes()),
            Some(key) => {
                return Err(invalid(
                    "SECRETS_KEY_PREVIOUS",
                    &format!("<{} bytes>", key.len()),
                    "must be at least 32 bytes, like SECRETS_KEY",
                ))
            }
            None => None,
        };
        let email = email_settings(&var, &secrets_key)?;
        Ok(Self {
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/chronicle".into()),
            nats_url,
            nats_creds_file,
            bind_addr: parse_or(&var, "BIND_ADDR", "127.0.0.1:8080".parse().ok())?,
            environment,
            jwt_secret,
            secrets_key,
            secrets_key_previous,
            jwt_issuer: var("JWT_ISSUER").unwrap_or_else(|| "chronicle".into()),
            jwt_audience: var("JWT_AUDIENCE").unwrap_or_else(|| "chronicle-api".into()),
            cors_allowed_origins: list(var("CORS_ALLOWED_ORIGINS")),
            rate_limit_per_minute: parse_or(&var, "RATE_LIMIT_PER_MINUTE", Some(100))?,
            auth_rate_limit_per_minute: parse_or(&var, "AUTH_RATE_LIMIT_PER_MINUTE", Some(10))?,
            trusted_proxies: list(var("TRUSTED_PROXIES")),
            nats_stream: var("NATS_STREAM").unwrap_or_else(|| "CHRONICLE_EVENTS".into()),
            nats_subject_prefix: var("NATS_SUBJECT_PREFIX")
                .unwrap_or_else(|| "chronicle.events".into()),
            nats_duplicate_window: match var("NATS_DUPLICATE_WINDOW") {
                Some(raw) => parse_duration(&raw)
                    .ok_or_else(|| invalid("NATS_DUPLICATE_WINDOW", &raw, "expected e.g. 2h"))?,
                None => Duration::from_secs(2 * 3600),
            },
            webhook_retry_schedule: match var("WEBHOOK_RETRY_SCHEDULE") {
                Some(raw) => raw
                    .split(',')
                    .map(|d| parse_duration(d.trim()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        invalid("WEBHOOK_RETRY_SCHEDULE", &raw, "expected e.g. 5s,5m,30m")
                    })?,
                None => ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
                    .iter()
                    .filter_map(|d| parse_duration(d))
                    .collect(),
            },
            webhook_allow_private_targets: parse_or(
                &var,
                "WEBHOOK_ALLOW_PRIVATE_TARGETS",
                Some(false),
            )?,
            webhook_max_in_flight: parse_or(&var, "WEBHOOK_MAX_IN_FLIGHT", Some(4))?,
            log_format,
            body_limit_bytes: parse_or(&var, "BODY_LIMIT_BYTES", Some(1024 * 1024))?,
            request_timeout: Duration::from_secs(parse_or(&var, "REQUEST_TIMEOUT_SECS", Some(30))?),
            database_max_connections: parse_or(&var, "DATABASE_MAX_CONNECTIONS", Some(20))?,
            header_read_timeout: match var("HEADER_READ_TIMEOUT") {
                Some(raw) => parse_duration(raw.trim())
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| invalid("HEADER_READ_TIMEOUT", &raw, "expected e.g. 10s"))?,
                None => Duration::from_secs(10),
            },
            max_connections: match parse_or(&var, "MAX_CONNECTIONS", Some(10_000))? {
                0 => return Err(invalid("MAX_CONNECTIONS", "0", "at least 1")),
                n => n,
            },
            metrics_token: var("METRICS_TOKEN"),
            refresh_reuse_grace: duration_or(&var, "REFRESH_REUSE_GRACE", "10s")?,
            session_max_age: match duration_or(&var, "SESSION_MAX_AGE", "90d")? {
                zero if zero.is_zero() => {
                    return Err(invalid("SESSION_MAX_AGE", "0", "must be longer than 0s"))
                }
                age => age,
            },
            login_failures_per_account: parse_or(&var, "LOGIN_FAILURES_PER_ACCOUNT", Some(10))?,
            activity_sample_interval: match duration_or(&var, "ACTIVITY_SAMPLE_INTERVAL", "5s")? {
                // Shorter, a sample says more about timer jitter than about the traffic.
                d if (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) => d,
                _ => {
                    let raw = var("ACTIVITY_SAMPLE_INTERVAL").unwrap_or_default();
                    return Err(invalid(
                        "ACTIVITY_SAMPLE_INTERVAL",
                        &raw,
                        "between 100ms and 1h",
                    ));
                }
            },
            email,
        })
    }

    /// `CHRONICLE_ENV=development` signs tokens with a key anyone can read in this repository,
    /// so such a server must not be reachable from other machines.
    pub fn check_bind_address(&self) -> Result<(), ConfigError> {
        let ip = self.bind_addr.ip().to_canonical();
        if self.environment == Environment::Development && !ip.is_loopback() {
            return Err(ConfigError::DevelopmentNotLoopback(self.bind_addr));
        }
        Ok(())
    }
}

/// A creds file that is missing or malformed fails the start, not every later connect.
fn check_creds_file(path: &std::path::Path) -> Result<(), ConfigError> {
    let shown = path.display().to_string();
    let contents = std::fs::read_to_string(path)
        .map_err(|e| invalid("NATS_CREDS_FILE", &shown, &format!("cannot be read: {e}")))?;
    async_nats::ConnectOptions::new()
        .credentials(&contents)
        .map(|_| ())
        .map_err(|e| {
            invalid(
                "NATS_CREDS_FILE",
                &shown,
                &format!("is not a NATS .creds file: {e}"),
            )
        })
}

fn email_settings(
    var: &impl Fn(&str) -> Option<String>,
    secrets_key: &[u8],
) -> Result<EmailSettings, ConfigError> {
    let smtp_url = match var("SMTP_URL") {
        Some(raw) => Some(
            smtp_connection_url(raw.trim())
                .map_err(|reason| invalid("SMTP_URL", &urls::redact(&raw), &reason))?,
        ),
        None => None,
    };
    let mail_from = var("MAIL_FROM").unwrap_or_else(|| "Chronicle <no-reply@localhost>".into());
    if let Err(e) = mail_from.parse::<lettre::message::Mailbox>() {
        return Err(invalid("MAIL_FROM", &mail_from, &e.to_string()));
    }
    let app_base_url = var("APP_BASE_URL").unwrap_or_else(|| "http://localhost:3000".into());
    match url::Url::parse(&app_base_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        _ => {
            return Err(invalid(
                "APP_BASE_URL",
                &app_base_url,
                "expected an http(s) URL such as https://app.example.com",
            ))
        }
    }
    // The one key for secrets at rest, so pinning it before a JWT_SECRET rotation (README,
    // "Secrets at rest") also keeps the links already mailed working.
    let token_secret = secrets_key.to_vec();
    Ok(EmailSettings {
        smtp_url,
        mail_from,
        app_base_url: app_base_url.trim_end_matches('/').to_owned(),
        token_secret,
    })
}

/// `smtp://` uses STARTTLS when the server offers it, `?tls=required` insists on it,
/// `?tls=none` never uses it, `smtps://` is TLS from the first byte. lettre reads a bare
/// `smtp://` as plaintext, so the URL is rewritten into its terms, then checked by building a
/// transport from it (no connection is made).
fn smtp_connection_url(raw: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected smtp://[user:pass@]host[:port][?tls=none|required] or smtps://[user:pass@]host[:port]";
    let mut url = url::Url::parse(raw).map_err(|e| format!("{e}; {EXPECTED}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("no host; {EXPECTED}"));
    }
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "tls")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let tls = match (url.scheme(), tls.as_deref()) {
        ("smtp", None | Some("opportunistic")) => Some("opportunistic"),
        ("smtp", Some("required")) => Some("required"),
        ("smtp", Some("none")) => None,
        ("smtps", None) => None,
        _ => return Err(EXPECTED.to_owned()),
    };
    url.set_query(None);
    if tls.is_some() || !others.is_empty() {
        let mut pairs = url.query_pairs_mut();
        pairs.extend_pairs(&others);
        if let Some(tls) = tls {
            pairs.append_pair("tls", tls);
        }
    }
    let url = url.to_string();
    lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&url)
        .map_err(|e| format!("{e}; {EXPECTED}"))?;
    Ok(url)
}

fn invalid(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_or<T: std::str::FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Option<T>,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e: T::Err| invalid(name, &raw, &e.to_string())),
        None => default.ok_or_else(|| invalid(name, "", "a value is required")),
    }
}

/// A duration variable such as `10s` or `90d`, else its default.
fn duration_or(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
) -> Result<Duration, ConfigError> {
    let raw = var(name).unwrap_or_else(|| default.to_owned());
    parse_duration(raw.trim())
        // Beyond what a timestamp can hold ahead of now, a duration means nothing.
        .filter(|d| d.as_secs() <= 100 * 365 * 86_400)
        .ok_or_else(|| {
            invalid(
                name,
                &raw,
                "expected e.g. 10s, 15m, 2h or 90d (at most 100 years)",
            )
        })
}

fn list(raw: Option<String>) -> Vec<String> {
    raw.map(|r| {
        r.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// Parses `500ms`, `5s`, `5m`, `2h`, `1d`.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn production_refuses_to_start_without_a_jwt_secret() {
        assert!(matches!(config(&[]), Err(ConfigError::MissingJwtSecret)));
    }

    #[test]
    fn a_short_jwt_secret_is_refused_even_in_development() {
        let result = config(&[("CHRONICLE_ENV", "development"), ("JWT_SECRET", "short")]);

        assert!(matches!(result, Err(ConfigError::ShortJwtSecret(5))));
    }

    #[test]
    fn a_short_secrets_key_is_refused_and_an_unset_one_follows_jwt_secret() {
        let short = config(&[("CHRONICLE_ENV", "development"), ("SECRETS_KEY", "short")]);
        assert!(matches!(short, Err(ConfigError::ShortSecretsKey(5))));

        let derived = config(&[("CHRONICLE_ENV", "development")]).unwrap();
        let pinned = config(&[
            ("CHRONICLE_ENV", "development"),
            ("JWT_SECRET", "a different jwt secret that is long enough"),
            (
                "SECRETS_KEY",
                std::str::from_utf8(&derived.secrets_key).unwrap(),
            ),
        ])
        .unwrap();
        assert_eq!(derived.secrets_key, pinned.secrets_key);
    }

    #[test]
    fn defaults_follow_the_api_contract() {
        let cfg = config(&[("CHRONICLE_ENV", "development")]).unwrap();

        assert_eq!(
            cfg.database_url,
            "postgres://postgres@127.0.0.1:5432/chronicle"
        );
        assert_eq!(cfg.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.rate_limit_per_minute, 100);
        assert_eq!(cfg.webhook_retry_schedule.len(), 7);
        assert_eq!(cfg.nats_duplicate_window, Duration::from_secs(7200));
        assert_eq!(cfg.header_read_timeout, Duration::from_secs(10));
        assert_eq!(cfg.max_connections, 10_000);
        assert!(cfg.metrics_token.is_none());
        assert_eq!(cfg.refresh_reuse_grace, Duration::from_secs(10));
        assert_eq!(cfg.session_max_age, Duration::from_secs(90 * 86_400));
        assert_eq!(cfg.login_failures_per_account, 10);
        assert_eq!(cfg.activity_sample_interval, Duration::from_secs(5));
    }

    #[test]
    fn zero_connections_or_a_zero_header_timeout_fail_start() {
        for (name, value) in [("MAX_CONNECTIONS", "0"), ("HEADER_READ_TIMEOUT", "0s")] {
            let err = config(&[("CHRONICLE_ENV", "development"), (name, value)])
                .err()
                .unwrap();

            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn development_mode_listens_on_loopback_only() {
        for (address, allowed) in [
            ("127.0.0.1:8080", true),
            ("[::1]:8080", true),
            ("0.0.0.0:8080", false),
            ("[::]:8080", false),
            ("192.168.1.5:8080", false),
        ] {
            let cfg = config(&[("CHRONICLE_ENV", "development"), ("BIND_ADDR", address)]).unwrap();

            assert_eq!(cfg.check_bind_address().is_ok(), allowed, "{address}");
        }
    }

    #[test]
    fn nats_settings_are_checked_at_start_without_showing_credentials() {
        let dev = ("CHRONICLE_ENV", "development");

        let bad_url = config(&[dev, ("NATS_URL", "http://u:secret@h")])
            .err()
            .unwrap();
        let missing = config(&[dev, ("NATS_CREDS_FILE", "/nonexistent/x.creds")])
            .err()
            .unwrap();
        let with_auth = config(&[dev, ("NATS_URL", "nats://u:hunter2@h:4222")]).unwrap();

        assert!(bad_url.to_string().contains("NATS_URL"));
        assert!(!bad_url.to_string().contains("secret"));
        assert!(missing.to_string().contains("NATS_CREDS_FILE"));
        assert!(!format!("{with_auth:?}").contains("hunter2"));
    }

    #[test]
    fn session_lifetimes_parse_like_other_durations_and_bad_ones_fail_start() {
        let cfg = config(&[
            ("CHRONICLE_ENV", "development"),
            ("REFRESH_REUSE_GRACE", "0s"),
            ("SESSION_MAX_AGE", "2s"),
        ])
        .unwrap();
        assert_eq!(cfg.refresh_reuse_grace, Duration::ZERO);
        assert_eq!(cfg.session_max_age, Duration::from_secs(2));

        for (name, value) in [
            ("REFRESH_REUSE_GRACE", "ten seconds"),
            ("SESSION_MAX_AGE", "0s"),
            ("SESSION_MAX_AGE", "99999999999999999d"),
            ("LOGIN_FAILURES_PER_ACCOUNT", "-1"),
        ] {
            let err = config(&[("CHRONICLE_ENV", "development"), (name, value)])
                .err()
                .unwrap_or_else(|| panic!("{name}={value} is refused"));
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn smtp_urls_map_to_their_tls_modes() {
        let url = |raw: &str| {
            config(&[("CHRONICLE_ENV", "development"), ("SMTP_URL", raw)])
                .map(|c| c.email.smtp_url.unwrap())
        };

        assert_eq!(
            url("smtp://mail.example.com").unwrap(),
            "smtp://mail.example.com?tls=opportunistic"
        );
        assert_eq!(
            url("smtp://u:p%40ss@127.0.0.1:2525?tls=none").unwrap(),
            "smtp://u:p%40ss@127.0.0.1:2525"
        );
        assert_eq!(
            url("smtp://mail.example.com?tls=required").unwrap(),
            "smtp://mail.example.com?tls=required"
        );
        assert_eq!(
            url("smtps://mail.example.com").unwrap(),
            "smtps://mail.example.com"
        );
        let err = url("http://u:secret@mail.example.com").err().unwrap();
        assert!(err.to_string().contains("SMTP_URL"));
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(url("smtp://mail.example.com?tls=sometimes").is_err());
    }

    #[test]
    fn email_defaults_follow_the_api_contract_and_bad_values_fail_start() {
        let cfg = config(&[("CHRONICLE_ENV", "development")]).unwrap();

        assert!(cfg.email.smtp_url.is_none());
        assert_eq!(cfg.email.mail_from, "Chronicle <no-reply@localhost>");
        assert_eq!(cfg.email.app_base_url, "http://localhost:3000");
        assert!(config(&[
            ("CHRONICLE_ENV", "development"),
            ("MAIL_FROM", "not an address")
        ])
        .is_err());
        assert!(config(&[
            ("CHRONICLE_ENV", "development"),
            ("APP_BASE_URL", "ftp://x")
        ])
        .is_err());
        assert!(matches!(
            config(&[("CHRONICLE_ENV", "development"), ("SECRETS_KEY", "short")]),
            Err(ConfigError::ShortSecretsKey(5))
        ));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[
            ("CHRONICLE_ENV", "development"),
            ("RATE_LIMIT_PER_MINUTE", "lots"),
        ])
        .err()
        .unwrap();

        assert!(err.to_string().contains("RATE_LIMIT_PER_MINUTE"));
    }

    #[test]
    fn an_activity_sample_interval_out_of_bounds_fails_start() {
        let with = |value| {
            config(&[
                ("CHRONICLE_ENV", "development"),
                ("ACTIVITY_SAMPLE_INTERVAL", value),
            ])
        };

        assert_eq!(
            with("250ms").unwrap().activity_sample_interval,
            Duration::from_millis(250)
        );
        for bad in ["10ms", "2h", "soon"] {
            let err = with(bad).err().unwrap().to_string();
            assert!(
                err.contains("ACTIVITY_SAMPLE_INTERVAL") && err.contains(bad),
                "{err}"
            );
        }
    }
}
