//! The messages: one subject, one text and one HTML template per kind, kept as files beside
//! this module (HTML auto-escaped by minijinja).

use std::sync::OnceLock;

use minijinja::{context, Environment};

use crate::email::tokens::TokenKind;

/// Every kind of email Chronicle sends; the name is the `kind` column and the template stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailKind {
    Welcome,
    Verification,
    PasswordReset,
    PasswordChanged,
}

impl EmailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailKind::Welcome => "welcome",
            EmailKind::Verification => "verification",
            EmailKind::PasswordReset => "password_reset",
            EmailKind::PasswordChanged => "password_changed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            EmailKind::Welcome,
            EmailKind::Verification,
            EmailKind::PasswordReset,
            EmailKind::PasswordChanged,
        ]
        .into_iter()
        .find(|k| k.as_str() == raw)
    }

    /// API.md's Email table names a word each subject contains.
    pub fn subject(self) -> &'static str {
        match self {
            EmailKind::Welcome => "Welcome to Chronicle",
            EmailKind::Verification => "Verify your email address",
            EmailKind::PasswordReset => "Reset your Chronicle password",
            EmailKind::PasswordChanged => "Your Chronicle password was changed",
        }
    }

    /// The token the message's link carries, if it has a link.
    pub fn token_kind(self) -> Option<TokenKind> {
        match self {
            EmailKind::Welcome | EmailKind::Verification => Some(TokenKind::Verification),
            EmailKind::PasswordReset => Some(TokenKind::PasswordReset),
            EmailKind::PasswordChanged => None,
        }
    }
}

/// A rendered message body.
pub struct Rendered {
    pub text: String,
    pub html: String,
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        let files = [
            ("welcome.txt", include_str!("templates/welcome.txt")),
            ("welcome.html", include_str!("templates/welcome.html")),
            (
                "verification.txt",
                include_str!("templates/verification.txt"),
            ),
            (
                "verification.html",
                include_str!("templates/verification.html"),
            ),
            (
                "password_reset.txt",
                include_str!("templates/password_reset.txt"),
            ),
            (
                "password_reset.html",
                include_str!("templates/password_reset.html"),
            ),
            (
                "password_changed.txt",
                include_str!("templates/password_changed.txt"),
            ),
            (
                "password_changed.html",
                include_str!("templates/password_changed.html"),
            ),
        ];
        for (name, source) in files {
            // The templates ship inside the binary; the unit test renders each one.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "an email template does not parse");
            }
        }
        env
    })
}

/// Renders both parts of a message; `link` is `None` for messages without one.
pub fn render(
    kind: EmailKind,
    email: &str,
    link: Option<&str>,
) -> Result<Rendered, minijinja::Error> {
    let env = environment();
    let ctx = context! { email => email, link => link };
    Ok(Rendered {
        text: env
            .get_template(&format!("{}.txt", kind.as_str()))?
            .render(&ctx)?,
        html: env
            .get_template(&format!("{}.html", kind.as_str()))?
            .render(&ctx)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_kind_renders_both_parts_and_the_html_part_escapes_the_address() {
        for kind in [
            EmailKind::Welcome,
            EmailKind::Verification,
            EmailKind::PasswordReset,
            EmailKind::PasswordChanged,
        ] {
            let link = kind.token_kind().map(|_| "http://app/x?user=1&token=abc");

            let rendered = render(kind, "<a@b.c>", link).unwrap();

            assert_eq!(EmailKind::parse(kind.as_str()), Some(kind));
            assert!(rendered.text.contains("<a@b.c>"));
            assert!(rendered.html.contains("&lt;a@b.c&gt;"), "{}", rendered.html);
            match link {
                Some(link) => assert!(rendered.text.contains(link)),
                None => assert!(!rendered.text.contains("http")),
            }
        }
    }
}
