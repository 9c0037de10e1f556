//! SFTP logins: who may log in, as which organisation or as the council, with which keys or password.
//!
//! Each login is a small JSON file in `data/users/`, read afresh at every login, so `gateway user add`
//! works while `gateway serve` is running (the sled store is locked by the server).

use std::fs;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use russh::keys::{Algorithm, PublicKey};
use serde::{Deserialize, Serialize};

use crate::data_dir::Owner;
use crate::domain::Slug;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("'{0}' is not a usable login name: use 1 to 64 letters, digits, '.', '-', '_' or '@', starting with a letter or digit")]
    BadLogin(String),
    #[error("the password is too weak: {0} (the council's rule: at least 9 characters, upper and lower case, and a digit)")]
    WeakPassword(&'static str),
    #[error("{path}: not an OpenSSH public key ({reason}); give the `.pub` file, e.g. ~/.ssh/id_ed25519.pub")]
    BadKey { path: String, reason: String },
    #[error("{path}: {kind} keys are not accepted; use ed25519, ECDSA or RSA (signed with SHA-2)")]
    KeyKind { path: String, kind: String },
    #[error("a login needs at least one public key (--key) or a password (--password-stdin)")]
    NoCredential,
    #[error("there is no login '{0}'")]
    Unknown(String),
    #[error("the login '{login}' belongs to {}; a login is one organisation's or the council's, never both", .org.in_words())]
    OtherOrganisation { login: String, org: Owner },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("the login file {path} is unreadable: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// What a session logged in with.
#[derive(Debug, Clone)]
pub enum Credential {
    Key(PublicKey),
    /// The password's hash at the time.
    Password(String),
}

/// One SFTP login of one organisation, or of the council (issue 10).
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "UserRecord", into = "UserRecord")]
pub struct User {
    pub login: String,
    /// Whose folders this login sees: an organisation's (its slug) or the council's.
    pub org: Owner,
    /// OpenSSH public key lines.
    #[serde(default)]
    pub keys: Vec<String>,
    /// An argon2 PHC string; the password itself is never stored.
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// A login as its file holds it: `"org": "<slug>"` for an organisation's (every record written
/// before issue 10), `"council": true` for the council's; exactly one of them.
#[derive(Serialize, Deserialize)]
struct UserRecord {
    login: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org: Option<Slug>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    council: bool,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    password_hash: Option<String>,
}

impl TryFrom<UserRecord> for User {
    type Error = String;
    fn try_from(r: UserRecord) -> Result<User, String> {
        let org = match (r.org, r.council) {
            (Some(slug), false) => Owner::Org(slug),
            (None, true) => Owner::Council,
            (Some(slug), true) => return Err(format!("the login is both the council's and {slug}'s")),
            (None, false) => return Err("the login names no organisation (\"org\") and is not the council's (\"council\": true)".into()),
        };
        Ok(User { login: r.login, org, keys: r.keys, password_hash: r.password_hash })
    }
}

impl From<User> for UserRecord {
    fn from(u: User) -> UserRecord {
        let council = u.org.is_council();
        UserRecord { login: u.login, org: u.org.org().cloned(), council, keys: u.keys, password_hash: u.password_hash }
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("login", &self.login)
            .field("org", &self.org)
            .field("keys", &self.keys.len())
            .field("password", &self.password_hash.is_some())
            .finish()
    }
}

impl User {
    /// Whether `key` is one of this login's keys (compared on the key data: the comment does not count).
    pub fn has_key(&self, key: &PublicKey) -> bool {
        self.keys.iter().filter_map(|k| PublicKey::from_openssh(k).ok()).any(|k| k.key_data() == key.key_data())
    }

    /// Whether the credential a session logged in with is still this login's: a key removed, or a
    /// password changed, ends what that session may do (since 2026-12-03).
    pub fn still_has(&self, credential: &Credential) -> bool {
        match credential {
            Credential::Key(key) => self.has_key(key),
            Credential::Password(hash) => self.password_hash.as_ref() == Some(hash),
        }
    }

    pub fn password_matches(&self, password: &str) -> bool {
        let Some(hash) = &self.password_hash else { return false };
        let Ok(parsed) = PasswordHash::new(hash) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
    }
}

pub fn check_login_name(login: &str) -> Result<(), UserError> {
    let ok = !login.is_empty()
        && login.len() <= 64
        && login.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadLogin(login.into()))
    }
}

/// The guide's password rule: 9 characters, upper and lower case, at least one digit.
pub fn check_password_policy(password: &str) -> Result<(), UserError> {
    if password.chars().count() < 9 {
        return Err(UserError::WeakPassword("it is shorter than 9 characters"));
    }
    if !password.chars().any(|c| c.is_uppercase()) {
        return Err(UserError::WeakPassword("it has no upper-case letter"));
    }
    if !password.chars().any(|c| c.is_lowercase()) {
        return Err(UserError::WeakPassword("it has no lower-case letter"));
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return Err(UserError::WeakPassword("it has no digit"));
    }
    Ok(())
}

pub fn hash_password(password: &str) -> Result<String, UserError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| UserError::Hash(e.to_string()))?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| UserError::Hash(e.to_string()))
}

/// Reads an OpenSSH public key line and refuses kinds the gateway does not take (DSA, and anything
/// without a key this server can verify).
pub fn parse_public_key(text: &str, path: &str) -> Result<String, UserError> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
    let key = PublicKey::from_openssh(line).map_err(|e| UserError::BadKey { path: path.into(), reason: e.to_string() })?;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } | Algorithm::Rsa { .. } => Ok(line.to_string()),
        other => Err(UserError::KeyKind { path: path.into(), kind: other.as_str().into() }),
    }
}

/// The logins under `data/users/`.
#[derive(Debug, Clone)]
pub struct Users {
    dir: PathBuf,
}

impl Users {
    pub fn new(dir: impl Into<PathBuf>) -> Users {
        Users { dir: dir.into() }
    }

    fn path(&self, login: &str) -> PathBuf {
        self.dir.join(format!("{login}.json"))
    }

    /// The login, read from disk now (so a change made while the server runs takes effect at once).
    pub fn get(&self, login: &str) -> Result<Option<User>, UserError> {
        if check_login_name(login).is_err() {
            return Ok(None);
        }
        let path = self.path(login);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| UserError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(UserError::Io { context: format!("reading {}", path.display()), source }),
        }
    }

    /// Adds the login, or adds keys / sets the password of an existing login of the same organisation
    /// (or of the council).
    pub fn add(&self, login: &str, org: impl Into<Owner>, keys: Vec<String>, password_hash: Option<String>) -> Result<User, UserError> {
        check_login_name(login)?;
        let org = &org.into();
        let mut user = match self.get(login)? {
            Some(u) if u.org != *org => return Err(UserError::OtherOrganisation { login: login.into(), org: u.org }),
            Some(u) => u,
            None => User { login: login.into(), org: org.clone(), keys: Vec::new(), password_hash: None },
        };
        for k in keys {
            if !user.keys.contains(&k) {
                user.keys.push(k);
            }
        }
        if password_hash.is_some() {
            user.password_hash = password_hash;
        }
        if user.keys.is_empty() && user.password_hash.is_none() {
            return Err(UserError::NoCredential);
        }
        self.write(&user)?;
        Ok(user)
    }

    pub fn remove(&self, login: &str) -> Result<User, UserError> {
        let user = self.get(login)?.ok_or_else(|| UserError::Unknown(login.into()))?;
        let path = self.path(login);
        fs::remove_file(&path).map_err(|source| UserError::Io { context: format!("removing {}", path.display()), source })?;
        Ok(user)
    }

    /// The unlock stamp of a login: `gateway user unlock` writes it, the running server removes it
    /// at that login's next password attempt and clears its lockout (issue 9). A file, because the
    /// server holds the store and runs in another process.
    fn unlock_stamp(&self, login: &str) -> PathBuf {
        self.dir.join(format!("{login}.unlock"))
    }

    /// `gateway user unlock`: leaves the stamp for the running server.
    pub fn request_unlock(&self, login: &str) -> Result<User, UserError> {
        let user = self.get(login)?.ok_or_else(|| UserError::Unknown(login.into()))?;
        let path = self.unlock_stamp(login);
        let when = chrono::Utc::now().to_rfc3339();
        fs::write(&path, format!("unlock requested {when}\n")).map_err(|source| UserError::Io { context: format!("writing {}", path.display()), source })?;
        Ok(user)
    }

    /// True (once) when an unlock of `login` was asked for since the last call.
    pub fn take_unlock(&self, login: &str) -> bool {
        check_login_name(login).is_ok() && fs::remove_file(self.unlock_stamp(login)).is_ok()
    }

    pub fn list(&self) -> Result<Vec<User>, UserError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => return Err(UserError::Io { context: format!("reading {}", self.dir.display()), source }),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(login) = name.strip_suffix(".json") {
                if let Some(u) = self.get(login)? {
                    out.push(u);
                }
            }
        }
        out.sort_by(|a, b| (&a.org, &a.login).cmp(&(&b.org, &b.login)));
        Ok(out)
    }

    fn write(&self, user: &User) -> Result<(), UserError> {
        let io = |context: String| move |source| UserError::Io { context, source };
        fs::create_dir_all(&self.dir).map_err(io(format!("creating {}", self.dir.display())))?;
        let tmp = self.dir.join(format!(".{}.tmp", user.login));
        let bytes = serde_json::to_vec_pretty(user).expect("a user serialises");
        write_private(&tmp, &bytes).map_err(io(format!("writing {}", tmp.display())))?;
        fs::rename(&tmp, self.path(&user.login)).map_err(io("saving the login".into()))
    }
}

/// Written readable by the gateway's own user only: it holds password hashes.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy_needs_nine_characters_both_cases_and_a_digit() {
        assert!(check_password_policy("Carers2022").is_ok());
        assert!(matches!(check_password_policy("Carers202"), Ok(())));
        assert!(check_password_policy("Carer202").is_err(), "8 characters");
        assert!(check_password_policy("carers2022").is_err(), "no upper case");
        assert!(check_password_policy("CARERS2022").is_err(), "no lower case");
        assert!(check_password_policy("CarersCare").is_err(), "no digit");
    }

    #[test]
    fn passwords_are_stored_as_argon2_hashes_and_verified() {
        let hash = hash_password("Carers2022").unwrap();
        assert!(hash.starts_with("$argon2"));
        let u = User { login: "a".into(), org: Owner::Org(Slug::parse("o").unwrap()), keys: vec![], password_hash: Some(hash) };
        assert!(u.password_matches("Carers2022"));
        assert!(!u.password_matches("Carers2023"));
    }

    #[test]
    fn login_names_are_plain() {
        assert!(check_login_name("pearl.rota-1@x").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(check_login_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn public_keys_match_on_key_data_not_comment() {
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkiSbcOg18XovBqGa0HPy5ts7VaGk6JHmfqwPibdhlq someone@laptop";
        let stored = parse_public_key(line, "k.pub").unwrap();
        let u = User { login: "a".into(), org: Owner::Org(Slug::parse("o").unwrap()), keys: vec![stored], password_hash: None };
        let other_comment = PublicKey::from_openssh(&line.replace("someone@laptop", "other")).unwrap();
        assert!(u.has_key(&other_comment));
    }

    #[test]
    fn a_login_record_written_before_council_logins_still_reads_as_its_organisations() {
        let old = r#"{"login": "pearl", "org": "pearl-carers-ltd", "keys": [], "password_hash": "$argon2id$x"}"#;
        let u: User = serde_json::from_str(old).unwrap();
        assert_eq!(u.org, Owner::Org(Slug::parse("pearl-carers-ltd").unwrap()));
        let again: serde_json::Value = serde_json::to_value(&u).unwrap();
        assert_eq!(again, serde_json::from_str::<serde_json::Value>(old).unwrap(), "an organisation's record is written as before");
    }

    #[test]
    fn a_council_login_record_says_it_is_the_councils_and_names_no_organisation() {
        let u = User { login: "finance".into(), org: Owner::Council, keys: vec![], password_hash: None };
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["council"], serde_json::json!(true));
        assert!(json.get("org").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<User>(json).unwrap().org, Owner::Council);
        for bad in [r#"{"login": "x", "org": "pearl-carers-ltd", "council": true}"#, r#"{"login": "x"}"#] {
            assert!(serde_json::from_str::<User>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_login_cannot_change_from_an_organisations_to_the_councils() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::new(dir.path());
        let pearl = Owner::Org(Slug::parse("pearl-carers-ltd").unwrap());
        users.add("rota", pearl.clone(), vec![], Some("h".into())).unwrap();
        assert!(matches!(users.add("rota", Owner::Council, vec![], Some("h".into())), Err(UserError::OtherOrganisation { .. })));
        users.add("finance", Owner::Council, vec![], Some("h".into())).unwrap();
        let refused = users.add("finance", pearl, vec![], Some("h".into())).unwrap_err();
        assert!(matches!(refused, UserError::OtherOrganisation { .. }));
        // It said "belongs to (council)" (until 2026-12-03).
        assert!(refused.to_string().starts_with("the login 'finance' belongs to the council;"), "{refused}");
        assert_eq!(users.get("finance").unwrap().unwrap().org, Owner::Council);
    }

    #[test]
    fn dsa_and_garbage_keys_are_refused() {
        assert!(matches!(parse_public_key("not a key", "k.pub"), Err(UserError::BadKey { .. })));
    }
}
