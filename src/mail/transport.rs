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
    /// `server`: `host:port (tls)`, for the log; never the login.
    Smtp { smtp: AsyncSmtpTransport<Tokio1Executor>, server: String },
    Files { data: DataDir, dir: PathBuf },
}

impl Transport {
    pub fn from_config(config: &MailConfig, data: &DataDir) -> Result<Transport, MailError> {
        if config.smtp_host.trim().is_empty() {
            return Ok(Transport::Files { data: data.clone(), dir: data.outbox() });
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
        let server = format!("{host}:{} ({:?})", config.smtp_port, config.tls).to_lowercase();
        Ok(Transport::Smtp { smtp: builder.build(), server })
    }

    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp { server, .. } => format!("SMTP {server}"),
            Transport::Files { dir, .. } => format!(".eml files in {}", dir.display()),
        }
    }

    /// Hands the email over; `name` is a file-safe name for it in `outbox/`.
    pub async fn send(&self, name: &str, message: Message) -> Result<(), String> {
        match self {
            Transport::Smtp { smtp, .. } => smtp.send(message).await.map(|_| ()).map_err(|e| e.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_smtp_host_means_eml_files_in_the_outbox_folder() {
        let data = DataDir::new("/d");
        let t = Transport::from_config(&MailConfig::default(), &data).unwrap();
        assert_eq!(t.describe(), ".eml files in /d/outbox");
    }

    #[tokio::test]
    async fn starttls_and_tls_transports_build_with_the_bundled_roots_and_crypto() {
        for tls in [MailTls::Starttls, MailTls::Tls, MailTls::None] {
            let config = MailConfig { smtp_host: "smtp.example.org".into(), tls, ..MailConfig::default() };
            let t = Transport::from_config(&config, &DataDir::new("/d")).unwrap();
            assert!(t.describe().starts_with("SMTP smtp.example.org:587 ("), "{}", t.describe());
        }
    }

    #[test]
    fn a_login_without_a_password_is_refused_at_start_without_showing_secrets() {
        let config = MailConfig {
            smtp_host: "smtp.example.org".into(),
            user: "gateway".into(),
            password_env: "GATEWAY_TEST_UNSET_PASSWORD_VAR".into(),
            ..MailConfig::default()
        };
        let Err(err) = Transport::from_config(&config, &DataDir::new("/d")) else { panic!("accepted a login without a password") };
        assert!(err.to_string().contains("GATEWAY_TEST_UNSET_PASSWORD_VAR is unset or empty"), "{err}");
    }
}
