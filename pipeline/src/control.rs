//! The control API on `<data_dir>/control.sock`: newline-delimited JSON over a Unix socket,
//! mode 0600 so only the owner can connect. Every invocation other than the pipeline owner
//! (`status`, `--once`, an attaching dashboard ...) talks to the running instance through it.
//!
//! Requests: `{"op":"snapshot"}`, `{"op":"subscribe"}` (then a snapshot per change until the
//! client hangs up), `{"op":"command","command":{"command":"run_cycle"}}`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::command::{self, Command, CommandOutcome, Origin};
use crate::error::{Error, Result};
use crate::orchestrator::PipelineHandle;
use crate::snapshot::Snapshot;

/// Longest request line accepted; requests are tiny, this only bounds a misbehaving client.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Snapshot,
    Subscribe,
    Command {
        command: Command,
        /// The client's SSH session and `--read-only` flag; the user comes from the socket's
        /// peer credentials, not from the client's word.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Snapshot { snapshot: Box<Snapshot> },
    Outcome { outcome: CommandOutcome },
    Error { message: String },
}

/// The serving socket; removes the socket file when dropped.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serve the handle's snapshots and commands on `path`. The caller must hold the instance
/// lock: any socket file already there belongs to a dead instance and is replaced.
pub fn serve(path: &Path, handle: PipelineHandle) -> Result<ControlServer> {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(socket = %path.display(), "removed a stale control socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| Error::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(path, e))?;
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let h = handle.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_conn(stream, h).await {
                            tracing::debug!(error = %e, "control connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(ControlServer {
        path: path.to_path_buf(),
        task,
    })
}

async fn serve_conn(stream: UnixStream, handle: PipelineHandle) -> std::io::Result<()> {
    let peer_user = stream
        .peer_cred()
        .map(|c| command::user_name(nix::unistd::Uid::from_raw(c.uid())))
        .unwrap_or_else(|_| "unknown".to_string());
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if n > MAX_REQUEST_BYTES {
            let msg = format!("request longer than {MAX_REQUEST_BYTES} bytes");
            return send(&mut write, &Response::Error { message: msg }).await;
        }
        let request: Request = match serde_json::from_str(line.trim()) {
            Ok(r) => r,
            Err(e) => {
                let message = format!("bad request: {e}");
                send(&mut write, &Response::Error { message }).await?;
                continue;
            }
        };
        match request {
            Request::Snapshot => {
                let snapshot = Box::new((*handle.snapshot()).clone());
                send(&mut write, &Response::Snapshot { snapshot }).await?;
            }
            Request::Subscribe => {
                let mut rx = handle.subscribe();
                loop {
                    let snapshot = Box::new((**rx.borrow_and_update()).clone());
                    send(&mut write, &Response::Snapshot { snapshot }).await?;
                    if rx.changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
            Request::Command { command, origin } => {
                let given = origin.unwrap_or_else(|| Origin {
                    user: String::new(),
                    ssh_connection: None,
                    via: "client".to_string(),
                    read_only: false,
                });
                let origin = Origin {
                    user: peer_user.clone(),
                    via: format!("socket/{}", given.via),
                    ..given
                };
                let outcome = match handle.send_as(command, origin).await {
                    Ok(o) => o,
                    Err(e) => CommandOutcome::failed(e.to_string()),
                };
                send(&mut write, &Response::Outcome { outcome }).await?;
            }
        }
    }
}

async fn send(write: &mut OwnedWriteHalf, response: &Response) -> std::io::Result<()> {
    let mut buf = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    buf.push(b'\n');
    write.write_all(&buf).await
}

/// A connection to the running instance.
#[derive(Debug)]
pub struct ControlClient {
    path: PathBuf,
    read: BufReader<tokio::net::unix::OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl ControlClient {
    /// Connect to the instance serving `data_dir`, or `None` if none is running (no socket, or
    /// a stale socket nobody listens on).
    pub async fn connect(data_dir: &Path) -> Result<Option<ControlClient>> {
        let path = crate::instance::socket_path(data_dir);
        match UnixStream::connect(&path).await {
            Ok(stream) => {
                let (read, write) = stream.into_split();
                Ok(Some(ControlClient {
                    path,
                    read: BufReader::new(read),
                    write,
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::Control {
                path,
                message: e.to_string(),
            }),
        }
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::Control {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    async fn request(&mut self, request: &Request) -> Result<()> {
        let mut buf = serde_json::to_vec(request)?;
        buf.push(b'\n');
        let r = self.write.write_all(&buf).await;
        r.map_err(|e| self.err(e.to_string()))
    }

    /// The next response line; `None` when the instance hung up.
    pub async fn next(&mut self) -> Result<Option<Response>> {
        let mut line = String::new();
        let n = self.read.read_line(&mut line).await;
        match n {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(serde_json::from_str(line.trim())?)),
            Err(e) => Err(self.err(e.to_string())),
        }
    }

    async fn expect(&mut self) -> Result<Response> {
        match self.next().await? {
            Some(Response::Error { message }) => Err(self.err(message)),
            Some(r) => Ok(r),
            None => Err(self.err("the instance closed the connection")),
        }
    }

    pub async fn snapshot(&mut self) -> Result<Snapshot> {
        self.request(&Request::Snapshot).await?;
        match self.expect().await? {
            Response::Snapshot { snapshot } => Ok(*snapshot),
            other => Err(self.err(format!("unexpected answer {other:?}"))),
        }
    }

    pub async fn command(&mut self, command: Command, origin: Origin) -> Result<CommandOutcome> {
        let origin = Some(origin);
        self.request(&Request::Command { command, origin }).await?;
        match self.expect().await? {
            Response::Outcome { outcome } => Ok(outcome),
            other => Err(self.err(format!("unexpected answer {other:?}"))),
        }
    }

    /// Ask for a snapshot per change; read them with `next_snapshot`.
    pub async fn subscribe(&mut self) -> Result<()> {
        self.request(&Request::Subscribe).await
    }

    /// The next snapshot of a subscription; `None` when the instance went away.
    pub async fn next_snapshot(&mut self) -> Result<Option<Arc<Snapshot>>> {
        match self.next().await? {
            Some(Response::Snapshot { snapshot }) => Ok(Some(Arc::new(*snapshot))),
            Some(Response::Error { message }) => Err(self.err(message)),
            Some(other) => Err(self.err(format!("unexpected answer {other:?}"))),
            None => Ok(None),
        }
    }
}
