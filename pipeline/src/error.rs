//! The one error type of the pipeline crate.

use std::path::PathBuf;

/// Everything the pipeline core can fail with. Variants carry what an operator needs to act:
/// the key, the path, the service's own text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file could not be read or parsed; the message names the key and line.
    #[error("config error in {path}: {message}")]
    Config { path: String, message: String },

    /// A setting is valid TOML but asks for something this build cannot do yet or at all.
    #[error("unsupported setting `{key}`: {message}")]
    Unsupported { key: String, message: String },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// RAW is immutable: the key exists with other bytes.
    #[error("immutable object {key} already exists with different content (existing sha256 {existing}, new {new})")]
    ImmutableConflict {
        key: String,
        existing: String,
        new: String,
    },

    #[error("object not found: {0}")]
    NotFound(String),

    /// An object's bytes do not match the hash recorded for it (a partial or corrupted write).
    #[error("checksum mismatch on {key}: expected sha256 {expected}, found {actual}")]
    ChecksumMismatch {
        key: String,
        expected: String,
        actual: String,
    },

    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },

    /// A call to an AWS service failed; `message` is the service's own text.
    #[error("{service} {operation} failed: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        message: String,
    },

    #[error("HTTP {url}: {message}")]
    Http { url: String, message: String },

    /// Another process holds the data dir.
    #[error("data dir {data_dir} is in use by ecomops pid {pid}; attach to it (run the same command again while it runs) or stop it first")]
    AlreadyRunning { data_dir: PathBuf, pid: u32 },

    /// Talking to the running instance over its control socket failed.
    #[error("control socket {path}: {message}")]
    Control { path: PathBuf, message: String },

    /// The instance hung up without answering: a command sent was not carried out (it answers
    /// every command it took before it stops), so sending it again is safe.
    #[error("control socket {path}: the instance closed the connection")]
    HungUp { path: PathBuf },

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("warehouse: {0}")]
    Warehouse(String),

    #[error("invalid input: {0}")]
    Invalid(String),

    /// The request names something that does not exist or cannot be done (exit code 2).
    #[error("{0}")]
    Usage(String),

    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the caller passed something wrong (exit code 2) rather than a run failing (1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Config { .. }
                | Error::Unsupported { .. }
                | Error::InvalidKey { .. }
                | Error::Usage(_)
        )
    }
}

/// Attach a path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
