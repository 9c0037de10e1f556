//! Where a finished email goes: an SMTP server (lettre) from `[mail]`, or, with no SMTP server
//! configured, an `.eml` file in `outbox/` under the data folder.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::MailError;
use crate::config::{MailConfig, MailTls};
use crate::data_dir::DataDir;

pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files { data: DataDir, dir: PathBuf },
}

impl Transport {
    pub fn from_config(config: &MailConfig, data: &DataDir) -> Result<Transport, MailError> {
        if config.smtp_host.trim().is_empty() {
            return Ok(Transport::Files { data: data.clone(), dir: data.root().join("outbox") });
        }
        let host = config.smtp_host.trim().to_string();
        let tls = |host: String| TlsParameters::new(host).map_err(|e| MailError::Config(format!("mail.smtp_host: {e}")));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(config.smtp_port)
            .timeout(Some(Duration::from_millis(config.timeout_ms)))
            .tls(match config.tls {
                MailTls::Starttls => Tls::Required(tls(host.clone())?),
                MailTls::Tls => Tls::Wrapper(tls(host.clone())?),
                MailTls::None => Tls::None,
            });
        if !config.user.is_empty() {
            let password = config.password().ok_or_else(|| {
                MailError::Config(format!(
                    "mail.user is set but there is no password: set mail.password, or mail.password_env to the name of an environment variable that holds it{}",
                    if config.password_env.is_empty() { String::new() } else { format!(" ({} is unset or empty)", config.password_env) }
                ))
            })?;
            builder = builder.credentials(Credentials::new(config.user.clone(), password));
        }
        Ok(Transport::Smtp(builder.build()))
    }

    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp(_) => "SMTP".into(),
            Transport::Files { dir, .. } => format!(".eml files in {}", dir.display()),
        }
    }

    /// Hands the email over; `name` is a file-safe name for it in `outbox/`.
    pub async fn send(&self, name: &str, message: Message) -> Result<(), String> {
        match self {
            Transport::Smtp(smtp) => smtp.send(message).await.map(|_| ()).map_err(|e| e.to_string()),
            Transport::Files { data, dir } => {
                let bytes = message.formatted();
                let path = dir.join(format!("{name}.eml"));
                let data = data.clone();
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    data.write_atomically(&path, &bytes)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("writing the .eml file: {e}"))
            }
        }
    }
}
