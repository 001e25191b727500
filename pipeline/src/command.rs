//! Operator commands: what the dashboard, the control socket and the CLI ask the running
//! pipeline to do. Every command passes through `Pipeline::dispatch`, which enforces read-only
//! mode in one place.

pub use ecom_model::command::{Command, Origin};
pub use ecom_model::protocol::CommandOutcome;
pub use ecom_model::report::Report;

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
