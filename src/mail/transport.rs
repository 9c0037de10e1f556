//! Where a finished email goes: an SMTP server (lettre) from `[mail]`, or, with no SMTP server
//! configured, an `.eml` file in `outbox/` under the data folder.
//!
//! Blocking on purpose (issue 9): the outbox worker runs on a thread of its own, so composing a large
//! email, encoding it for SMTP and waiting on a slow server never take a thread of the async runtime
//! that serves SFTP.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport as _};

use super::MailError;
use crate::config::{MailConfig, MailTls};
use crate::data_dir::DataDir;

pub enum Transport {
    /// `server`: `host:port (tls)` and the login name, for the log; never the password.
    Smtp { smtp: SmtpTransport, server: String },
    Files { data: DataDir, dir: PathBuf },
}

impl Transport {
    pub fn from_config(config: &MailConfig, data: &DataDir) -> Result<Transport, MailError> {
        if config.smtp_host.trim().is_empty() {
            return Ok(Transport::Files { data: data.clone(), dir: data.outbox() });
        }
        let host = config.smtp_host.trim().to_string();
        let private_roots = private_roots(config)?;
        let tls = || {
            // The bundled webpki roots stay trusted; `ca_file` adds a private CA or a server's own
            // self-signed certificate to them (issue 9).
            let mut params = TlsParameters::builder(host.clone());
            for cert in &private_roots {
                params = params.add_root_certificate(cert.clone());
            }
            params.build_rustls().map_err(|e| MailError::Config(format!("mail.smtp_host '{host}': {e}")))
        };
        let mut builder = SmtpTransport::builder_dangerous(&host)
            .port(config.smtp_port)
            .timeout(Some(Duration::from_millis(config.timeout_ms)))
            .tls(match config.tls {
                MailTls::Starttls => Tls::Required(tls()?),
                MailTls::Tls => Tls::Wrapper(tls()?),
                MailTls::None => Tls::None,
            });
        let mut server = format!("{host}:{} ({:?})", config.smtp_port, config.tls).to_lowercase();
        if !config.user.is_empty() {
            let password = config.password().ok_or_else(|| {
                MailError::Config(format!(
                    "mail.user is set but there is no password: set mail.password, or mail.password_env to the name of an environment variable that holds it{}",
                    if config.password_env.is_empty() { String::new() } else { format!(" ({} is unset or empty)", config.password_env) }
                ))
            })?;
            builder = builder.credentials(Credentials::new(config.user.clone(), password));
            server.push_str(&format!(" as {}", config.user));
        }
        Ok(Transport::Smtp { smtp: builder.build(), server })
    }

    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp { server, .. } => format!("SMTP {server}"),
            Transport::Files { dir, .. } => format!(".eml files in {}", dir.display()),
        }
    }

    /// Hands the email over; `name` is a file-safe name for it in `outbox/`.
    pub fn send(&self, name: &str, message: &Message) -> Result<(), String> {
        match self {
            // lettre's error is the server's reply or the connection's failure; it never carries
            // the credentials.
            Transport::Smtp { smtp, .. } => smtp.send(message).map(|_| ()).map_err(|e| e.to_string()),
            Transport::Files { data, dir } => {
                let path = dir.join(format!("{name}.eml"));
                std::fs::create_dir_all(dir)
                    .and_then(|()| data.write_atomically(&path, &message.formatted()))
                    .map_err(|e| format!("writing the .eml file: {e}"))
            }
        }
    }
}

/// The certificates in `mail.ca_file` (PEM, one or more), or none when it is not set.
fn private_roots(config: &MailConfig) -> Result<Vec<Certificate>, MailError> {
    let path = &config.ca_file;
    if path.as_os_str().is_empty() {
        return Ok(Vec::new());
    }
    if config.tls == MailTls::None {
        return Err(MailError::Config(format!(
            "mail.ca_file is set ({}) but mail.tls is \"none\": set tls = \"starttls\" or \"tls\", or remove ca_file",
            path.display()
        )));
    }
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
    let pem = std::fs::read(path).map_err(|e| MailError::Config(format!("mail.ca_file {}: {e}", shown.display())))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(MailError::Config(format!("mail.ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", shown.display())));
    }
    let cert = Certificate::from_pem(&pem).map_err(|e| MailError::Config(format!("mail.ca_file {}: {e}", shown.display())))?;
    Ok(vec![cert])
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

    #[test]
    fn starttls_and_tls_transports_build_with_the_bundled_roots_and_crypto() {
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

    #[test]
    fn the_login_name_is_described_but_never_the_password() {
        let config = MailConfig { smtp_host: "smtp.example.org".into(), user: "gateway".into(), password: "hunter2".into(), ..MailConfig::default() };
        let t = Transport::from_config(&config, &DataDir::new("/d")).unwrap();
        assert_eq!(t.describe(), "SMTP smtp.example.org:587 (starttls) as gateway");
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for (ca_file, expected) in [(dir.path().join("missing.pem"), "missing.pem: "), (empty, "holds no PEM certificate")] {
            let config = MailConfig { smtp_host: "smtp.example.org".into(), ca_file, ..MailConfig::default() };
            let Err(err) = Transport::from_config(&config, &DataDir::new("/d")) else { panic!("accepted a bad ca_file") };
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn a_ca_file_without_tls_is_refused() {
        let config = MailConfig { smtp_host: "relay".into(), tls: MailTls::None, ca_file: "/etc/ca.pem".into(), ..MailConfig::default() };
        let Err(err) = Transport::from_config(&config, &DataDir::new("/d")) else { panic!("accepted ca_file with tls none") };
        assert!(err.to_string().contains("mail.tls is \"none\""), "{err}");
    }
}
