//! Hot reload (PE-6): watch the policy directory, reload after a quiet period, keep the
//! running set when the new one does not load.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use warden_policy::{Engine, Reload};

use crate::audit::Audit;
use crate::policy_files;

/// Starts watching `dir`. The returned watcher must be kept alive.
pub fn watch(
    engine: Arc<Engine>,
    audit: Arc<Audit>,
    dir: PathBuf,
    debounce: Duration,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event
            && !e.kind.is_access()
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let a burst of writes (editors, `git checkout`) settle, then reload once.
            tokio::time::sleep(debounce).await;
            while rx.try_recv().is_ok() {}
            let engine = Arc::clone(&engine);
            let dir = dir.clone();
            let audit = Arc::clone(&audit);
            let outcome =
                tokio::task::spawn_blocking(move || reload_now(&engine, &audit, &dir)).await;
            if let Err(e) = outcome {
                tracing::error!(error = %e, "policy reload task failed; the running policy set stays");
            }
        }
    });
    Ok(watcher)
}

/// Reads and loads `dir` now; logs what happened. Returns true when a new set is in force.
pub fn reload_now(engine: &Engine, audit: &Audit, dir: &std::path::Path) -> bool {
    let sources = match policy_files::read_dir(dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "policy reload: cannot read the policy directory; the running policy set stays");
            return false;
        }
    };
    match engine.reload(&sources) {
        Ok(Reload::Applied { from, to }) => {
            let s = to.stats();
            tracing::info!(
                version = to.version(),
                previous = %from,
                policies = s.policies,
                files = s.files,
                "policy set reloaded"
            );
            {
                audit.event(
                    warden_audit::EventRecord::new(
                        crate::audit::now_ms(),
                        "policy_loaded",
                        "warden",
                    )
                    .detail("policy_version", to.version().to_owned())
                    .detail("previous", from.to_string())
                    .detail("policies", s.policies)
                    .detail("source", dir.display().to_string()),
                );
            }
            true
        }
        Ok(Reload::Unchanged) => false,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(error = %e, "policy reload rejected; the running policy set stays");
            }
            {
                audit.event(
                    warden_audit::EventRecord::new(
                        crate::audit::now_ms(),
                        "policy_rejected",
                        "warden",
                    )
                    .detail(
                        "errors",
                        errors.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    )
                    .detail("source", dir.display().to_string()),
                );
            }
            false
        }
    }
}
