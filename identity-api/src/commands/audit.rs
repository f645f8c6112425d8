//! `audit list` and `audit export`: the audit trail on stdout.

use std::io::Write as _;

use super::{CommandError, open};
use crate::audit::{self, AuditError};
use crate::config::AuditCommand;

pub(super) async fn run(cmd: AuditCommand) -> Result<(), CommandError> {
    match cmd {
        AuditCommand::List { filter, limit, db } => {
            let db = open(&db).await?;
            let result = audit::newest(&db, &filter.filter(), limit as usize).await;
            db.close().await;
            let (events, more) = result?;
            if events.is_empty() {
                eprintln!("no audit events match");
                return Ok(());
            }
            let mut stdout = std::io::stdout().lock();
            written(stdout.write_all(audit::table(&events).as_bytes()))?;
            if more {
                eprintln!(
                    "showing the newest {limit} events that match; older ones match too \
                     (narrow with --since or --until, raise --limit, or use audit export)"
                );
            }
        }
        AuditCommand::Export {
            filter,
            after_id,
            db,
        } => {
            let db = open(&db).await?;
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            let result = audit::export(&db, &filter.filter(), after_id, &mut stdout).await;
            db.close().await;
            match result {
                Err(AuditError::Output(e)) => written(Err(e))?,
                other => {
                    other?;
                }
            }
        }
    }
    Ok(())
}

/// A reader that stopped reading (`audit export | head`) is not an error; any other failure to
/// write is.
fn written(result: std::io::Result<()>) -> Result<(), CommandError> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CommandError::Audit(AuditError::Output(e)))
        }
        _ => Ok(()),
    }
}
