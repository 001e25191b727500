//! The one place commands are carried out: read-only mode (the instance's or the asking
//! client's) is enforced here, and every mutating command, refused or not, is audited.

use chrono::Utc;

use crate::audit;
use crate::command::{Command, CommandOutcome, Origin};

use super::{Pipeline, RECENT_ACTIONS};

impl Pipeline {
    /// The one place commands are carried out: read-only mode (the instance's or the asking
    /// client's) is enforced here, and every mutating command, refused or not, is audited.
    pub async fn dispatch(&mut self, command: Command, origin: &Origin) -> CommandOutcome {
        if !command.is_mutating() {
            return self.carry_out(command).await;
        }
        let started = Utc::now();
        let (outcome, result) = if self.options.read_only || origin.read_only {
            tracing::warn!(command = command.name(), user = %origin.user, "refused: read-only mode");
            let who = if self.options.read_only {
                "this instance"
            } else {
                "the asking client"
            };
            let o = CommandOutcome::failed(format!(
                "refused: {} changes the pipeline and {who} is read-only",
                command.name()
            ));
            (o, "refused")
        } else {
            tracing::info!(command = command.name(), user = %origin.user, via = %origin.via, "operator command");
            let o = self.carry_out(command.clone()).await;
            let r = if o.ok { "ok" } else { "failed" };
            (o, r)
        };
        let record = audit::Record {
            at: started,
            user: origin.user.clone(),
            ssh_connection: origin.ssh_connection.clone(),
            via: origin.via.clone(),
            action: command.name().to_string(),
            arguments: serde_json::to_string(&command).unwrap_or_default(),
            outcome: result.to_string(),
            message: outcome.summary(),
        };
        let writable = if self.options.read_only {
            None
        } else {
            self.warehouse.as_deref()
        };
        audit::write(&self.config.data_dir, writable, &record).await;
        if self.actions.len() == RECENT_ACTIONS {
            self.actions.pop_front();
        }
        self.actions.push_back(record);
        self.publish();
        outcome
    }
}
