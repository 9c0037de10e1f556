//! Email of results (issue 4): contacts, the templates, the durable outbox and its sender.
//!
//! A processed file's emails are queued in the store in the same batch that commits the import
//! (`store/mail.rs`), then a worker started by `serve` on a thread of its own renders each from the
//! stored result and sends it, retrying with growing delays while the server is down, and marks it
//! sent.

pub mod contacts;
pub mod outbox;
pub mod render;
pub mod transport;

pub use contacts::{Contact, EmailAddress, Notify};
pub use outbox::{Letter, Queued};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A `[mail]` setting that cannot work; the gateway does not start with it.
    #[error("the mail configuration is not usable: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// What a waiting email needs is gone from the store (it is kept waiting, with this as its error).
    #[error("{0}")]
    Missing(String),
    #[error("cannot start the mail outbox thread: {0}")]
    Thread(std::io::Error),
}
