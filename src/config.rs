//! Typed configuration from the environment (and `.env`), with API.md's names and defaults.

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
    pub bind_addr: SocketAddr,
    pub environment: Environment,
    pub jwt_secret: Vec<u8>,
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
    /// What link tokens are derived from: `SECRETS_KEY`, else `JWT_SECRET`.
    pub token_secret: Vec<u8>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs and panics.
        f.debug_struct("Config")
            .field("database_url", &self.database_url)
            .field("nats_url", &self.nats_url)
            .field("bind_addr", &self.bind_addr)
            .field("environment", &self.environment)
            .field("jwt_secret", &"<redacted>")
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
    #[error("SECRETS_KEY must be at least 32 bytes long (it has {0})")]
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
        let log_format = match var("LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            None if environment == Environment::Production => LogFormat::Json,
            None => LogFormat::Pretty,
            Some(other) => return Err(invalid("LOG_FORMAT", other, "expected json or pretty")),
        };
        let email = email_settings(&var, &jwt_secret)?;
        Ok(Self {
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/chronicle".into()),
            nats_url: var("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            bind_addr: parse_or(&var, "BIND_ADDR", "127.0.0.1:8080".parse().ok())?,
            environment,
            jwt_secret,
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
            email,
        })
    }
}

fn email_settings(
    var: &impl Fn(&str) -> Option<String>,
    jwt_secret: &[u8],
) -> Result<EmailSettings, ConfigError> {
    let smtp_url = match var("SMTP_URL") {
        Some(raw) => Some(
            smtp_connection_url(raw.trim())
                .map_err(|reason| invalid("SMTP_URL", &crate::startup::redact(&raw), &reason))?,
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
    let token_secret = match var("SECRETS_KEY") {
        Some(key) if key.len() >= 32 => key.into_bytes(),
        Some(key) => return Err(ConfigError::ShortSecretsKey(key.len())),
        None => jwt_secret.to_vec(),
    };
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
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
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
}
