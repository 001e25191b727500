//! The control API on `<data_dir>/control.sock`: newline-delimited JSON over a Unix socket,
//! mode 0600 so only the owner can connect. Every invocation other than the pipeline owner
//! (`status`, `--once`, an attaching dashboard ...) talks to the running instance through it.
//!
//! Requests (`ecom_model::protocol`): `{"op":"hello","protocol":1}` first, then
//! `{"op":"snapshot"}`, `{"op":"subscribe"}` (then a snapshot per change until the client hangs
//! up), `{"op":"command","command":{"command":"run_cycle"}}`. An instance refuses a hello of
//! another protocol version, and a client an instance that answers with another one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

pub use ecom_model::protocol::{Request, Response};
use ecom_model::PROTOCOL_VERSION;

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
            Request::Hello { protocol } if protocol != PROTOCOL_VERSION => {
                let message = format!(
                    "this instance speaks control protocol {PROTOCOL_VERSION} (ecomops {}), the \
                     client {protocol}: run the same ecomops version",
                    env!("CARGO_PKG_VERSION")
                );
                return send(&mut write, &Response::Error { message }).await;
            }
            Request::Hello { .. } => {
                let hello = Response::Hello {
                    protocol: PROTOCOL_VERSION,
                    version: env!("CARGO_PKG_VERSION").to_string(),
                };
                send(&mut write, &hello).await?;
            }
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
                match handle.send_as(command, origin).await {
                    Ok(outcome) => send(&mut write, &Response::Outcome { outcome }).await?,
                    // The pipeline stopped before taking the command: hang up without an
                    // answer, so the client knows it was not carried out and can go on
                    // (the data dir is free again, or another instance holds it).
                    Err(e) => {
                        tracing::debug!(error = %e, "command arrived as the pipeline stopped");
                        return Ok(());
                    }
                }
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
                let mut client = ControlClient {
                    path,
                    read: BufReader::new(read),
                    write,
                };
                client.hello().await?;
                Ok(Some(client))
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

    /// Say which protocol this client speaks; refuse an instance that speaks another.
    async fn hello(&mut self) -> Result<()> {
        self.request(&Request::Hello {
            protocol: PROTOCOL_VERSION,
        })
        .await?;
        match self.expect().await? {
            Response::Hello { protocol, .. } if protocol == PROTOCOL_VERSION => Ok(()),
            Response::Hello { protocol, version } => Err(self.err(format!(
                "the instance (ecomops {version}) speaks control protocol {protocol}, this \
                 ecomops {PROTOCOL_VERSION}: run the same version"
            ))),
            other => Err(self.err(format!("unexpected answer to hello: {other:?}"))),
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
            None => Err(Error::HungUp {
                path: self.path.clone(),
            }),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance of another version: it answers hello with protocol 999.
    async fn foreign_instance(path: &Path) -> JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            BufReader::new(read).read_line(&mut line).await.unwrap();
            assert!(line.contains("\"hello\""), "{line}");
            let hello = Response::Hello {
                protocol: 999,
                version: "9.9.9".into(),
            };
            send(&mut write, &hello).await.unwrap();
        })
    }

    #[tokio::test]
    async fn a_client_refuses_an_instance_of_another_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let server = foreign_instance(&crate::instance::socket_path(dir.path())).await;
        let err = ControlClient::connect(dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("protocol 999") && err.contains("9.9.9"),
            "{err}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_instance_refuses_a_client_of_another_protocol() {
        let (client, server) = UnixStream::pair().unwrap();
        let handle = crate::orchestrator::PipelineHandle::detached();
        let serving = tokio::spawn(serve_conn(server, handle));
        let (read, mut write) = client.into_split();
        write
            .write_all(b"{\"op\":\"hello\",\"protocol\":0}\n")
            .await
            .unwrap();
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await.unwrap();
        let r: Response = serde_json::from_str(&line).unwrap();
        assert!(
            matches!(&r, Response::Error { message }
                if message.contains(&format!("protocol {}", ecom_model::PROTOCOL_VERSION))
                    && message.contains("the client 0")),
            "{r:?}"
        );
        serving.await.unwrap().unwrap();
    }
}
