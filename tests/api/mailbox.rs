//! A real SMTP server for a test (tests/smtp/sink.py on aiosmtpd) and what its mailbox shows.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::poll_pause;

/// One SMTP server on a port of its own; `reserve` picks the port without listening yet, so a
/// test can have SMTP refuse connections first.
pub struct SmtpSink {
    pub port: u16,
    dir: PathBuf,
    rejected: Vec<String>,
    child: Option<Child>,
}

impl SmtpSink {
    pub fn reserve(rejected: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "chronicle-test-mail-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            port,
            dir,
            rejected: rejected.iter().map(|r| (*r).to_owned()).collect(),
            child: None,
        }
    }

    pub fn start(rejected: &[&str]) -> Self {
        let mut sink = Self::reserve(rejected);
        sink.listen();
        sink
    }

    /// Starts accepting mail on the reserved port; waits until it does.
    pub fn listen(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/sink.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir);
        for rejected in &self.rejected {
            command.args(["--reject", rejected]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (pip install aiosmtpd; scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the SMTP sink did not start (is aiosmtpd installed?)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `SMTP_URL` for this server: plain `smtp://`, i.e. STARTTLS only if offered (it is not).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message delivered so far, as the sink decoded it.
    pub fn messages(&self) -> Vec<Value> {
        let mut messages = Vec::new();
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !name.starts_with('.') {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                messages.push(serde_json::from_str(&text).unwrap());
            }
        }
        messages
    }

    /// The raw .eml files, for searching what went over the wire.
    pub fn raw(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if entry.file_name().to_string_lossy().ends_with(".eml") {
                all.push_str(&String::from_utf8_lossy(
                    &std::fs::read(entry.path()).unwrap(),
                ));
            }
        }
        all
    }

    pub fn messages_to(&self, address: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| {
                m["rcpt_tos"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|a| a.as_str() == Some(address)))
            })
            .collect()
    }

    /// Waits (up to 30 s) until `address` has a message whose subject contains `subject`, and
    /// returns all such messages.
    pub async fn wait_for(&self, address: &str, subject: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found: Vec<Value> = self
                .messages_to(address)
                .into_iter()
                .filter(|m| m["subject"].as_str().is_some_and(|s| s.contains(subject)))
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {count} email(s) '{subject}' to {address}; mailbox: {:?}",
                self.messages()
            );
            poll_pause().await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `token` query parameter of the link in a message's text part.
pub fn token_in(message: &Value) -> String {
    let text = message["text"].as_str().expect("a text part");
    let start = text.find("token=").expect("a link with a token") + "token=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}
