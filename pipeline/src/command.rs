//! Operator commands: what the dashboard, the control socket and the CLI ask the running
//! pipeline to do. Every command passes through `Pipeline::dispatch`, which enforces read-only
//! mode in one place.

use serde::{Deserialize, Serialize};

pub use ecom_model::command::{Command, Origin};

/// This process, as the origin of its own commands.
pub fn current_origin(via: &str, read_only: bool) -> Origin {
    Origin {
        user: user_name(nix::unistd::Uid::current()),
        ssh_connection: std::env::var("SSH_CONNECTION")
            .ok()
            .filter(|s| !s.is_empty()),
        via: via.to_string(),
        read_only,
    }
}

/// The name of a uid (its number when the passwd database has no entry).
pub fn user_name(uid: nix::unistd::Uid) -> String {
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// The pipeline's answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub ok: bool,
    pub message: String,
    /// Structured result (e.g. a cycle report), when the command has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl CommandOutcome {
    pub fn ok(message: impl Into<String>) -> CommandOutcome {
        CommandOutcome {
            ok: true,
            message: message.into(),
            detail: None,
        }
    }

    pub fn failed(message: impl Into<String>) -> CommandOutcome {
        CommandOutcome {
            ok: false,
            message: message.into(),
            detail: None,
        }
    }
}
