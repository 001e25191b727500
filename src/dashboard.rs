//! `ecomops` with no command: the dashboard. It owns the pipeline (lock, control socket) when
//! nobody else does, or attaches to the running instance over its control socket; the views are
//! the same either way. The terminal is restored on quit, on error, on panic and on
//! SIGTERM/SIGHUP (a dropped SSH link); an attached dashboard going away never stops the
//! pipeline it watched.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{Event, KeyEvent};
use crossterm::terminal::{BeginSynchronizedUpdate, EndSynchronizedUpdate};
use crossterm::{cursor, execute, terminal};
use ecom_pipeline::command::{Command, CommandOutcome, Origin};
use ecom_pipeline::config::Config;
use ecom_pipeline::control::ControlClient;
use ecom_pipeline::instance::InstanceLock;
use ecom_pipeline::orchestrator::{LogBuffer, PipelineHandle, PipelineOptions};
use ecom_pipeline::snapshot::{RunMode, Snapshot};
use ecom_pipeline::Error;
use ecom_ui::{App, Effect};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::headless;

/// Where snapshots come from and commands go.
enum Source {
    Local(PipelineHandle),
    Attached {
        data_dir: std::path::PathBuf,
    },
    /// `--read-only`: no lock taken (see `observe`).
    Observer {
        config: Box<Config>,
        log: LogBuffer,
    },
}

impl Source {
    async fn send(&self, command: Command, origin: Origin) -> CommandOutcome {
        let result = match self {
            Source::Local(h) => h.send_as(command, origin).await,
            Source::Attached { data_dir } => match ControlClient::connect(data_dir).await {
                Ok(Some(mut c)) => c.command(command, origin).await,
                Ok(None) => Err(Error::Other("the instance is gone".into())),
                Err(e) => Err(e),
            },
            Source::Observer { config, log } => {
                return crate::observe::command(config, command, origin, log.clone())
                    .await
                    .unwrap_or_else(|e| CommandOutcome::failed(e.to_string()));
            }
        };
        result.unwrap_or_else(|e| CommandOutcome::failed(e.to_string()))
    }
}

pub async fn run(
    config: Config,
    read_only: bool,
    no_color: bool,
    log: LogBuffer,
) -> anyhow::Result<ExitCode> {
    let data_dir = config.data_dir.clone();
    if read_only {
        // Observe: never the lock, never a cycle, nothing written.
        let snapshots =
            crate::observe::follow(config.clone(), RunMode::Dashboard, log.clone()).await?;
        let source = Source::Observer {
            config: Box::new(config),
            log,
        };
        let mut app = App::new(true, !no_color, true);
        return ui_loop(&mut app, source, snapshots, None, true)
            .await
            .map(|()| ExitCode::SUCCESS);
    }
    // Attached: when the instance went away (None while connected).
    let mut disconnected = None;
    let (source, snapshots, stop, lock) = match InstanceLock::acquire(&data_dir) {
        Ok(lock) => {
            let options = PipelineOptions {
                mode: RunMode::Dashboard,
                read_only,
                schedule: true,
                log,
            };
            let (handle, task, server) = headless::start(config, options).await?;
            let rx = handle.subscribe();
            (Source::Local(handle), rx, Some((task, server)), Some(lock))
        }
        Err(Error::AlreadyRunning { pid, .. }) => {
            let mut client = headless::connect_running(&data_dir, pid).await?;
            let first = Arc::new(client.snapshot().await?);
            client.subscribe().await?;
            let (tx, rx) = watch::channel(first);
            let (gone_tx, gone_rx) = watch::channel(None);
            tokio::spawn(follow(client, data_dir.clone(), tx, gone_tx));
            let source = Source::Attached {
                data_dir: data_dir.clone(),
            };
            disconnected = Some(gone_rx);
            (source, rx, None, None)
        }
        Err(e) => return Err(e.into()),
    };
    let attached = matches!(source, Source::Attached { .. });
    let mut app = App::new(read_only, !no_color, attached);
    let result = ui_loop(&mut app, source, snapshots, disconnected, read_only).await;
    if let Some((task, server)) = stop {
        drop(server);
        if let Some(action) = &app.pending {
            eprintln!("ecomops: waiting for {action} to finish before stopping the pipeline…");
        }
        task.stop().await;
    }
    drop(lock);
    result.map(|()| ExitCode::SUCCESS)
}

/// Raw mode and the alternate screen for as long as it lives; restored on drop and on a panic
/// of the UI thread (a panic elsewhere is caught by its task and must not tear the screen).
/// The UI loop runs in `block_on` on the thread that enters the guard; pipeline tasks run on
/// the runtime's workers.
struct TerminalGuard;

fn restore() {
    let mut out = std::io::stdout();
    let _ = execute!(
        out,
        EndSynchronizedUpdate,
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
    let _ = terminal::disable_raw_mode();
    let _ = out.flush();
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        let ui_thread = std::thread::current().id();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == ui_thread {
                restore();
            }
            previous(info);
        }));
        terminal::enable_raw_mode().context("the dashboard needs a terminal (use --no-ui)")?;
        // No mouse capture: the terminal's own selection and copy keep working over SSH.
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .context("entering the alternate screen")?;
        Ok(TerminalGuard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Terminal events on a blocking thread (crossterm's reader blocks); ends when the receiver
/// is dropped.
fn spawn_reader() -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || loop {
        match crossterm::event::poll(Duration::from_millis(200)) {
            Ok(true) => match crossterm::event::read() {
                Ok(ev) => {
                    if tx.blocking_send(ev).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            Ok(false) => {
                if tx.is_closed() {
                    return;
                }
            }
            Err(_) => return,
        }
    });
    rx
}

/// Follow an attached instance's snapshots; when it goes away, say since when and try again
/// every two seconds, so a restarted service is picked up without restarting the dashboard.
async fn follow(
    mut client: ControlClient,
    data_dir: std::path::PathBuf,
    snapshots: watch::Sender<Arc<Snapshot>>,
    gone: watch::Sender<Option<chrono::DateTime<chrono::Utc>>>,
) {
    loop {
        while let Ok(Some(s)) = client.next_snapshot().await {
            if snapshots.send(s).is_err() {
                return;
            }
        }
        let _ = gone.send(Some(chrono::Utc::now()));
        client = loop {
            if snapshots.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Ok(Some(mut c)) = ControlClient::connect(&data_dir).await {
                if let Ok(first) = c.snapshot().await {
                    if c.subscribe().await.is_ok() {
                        let _ = snapshots.send(Arc::new(first));
                        break c;
                    }
                }
            }
        };
        let _ = gone.send(None);
    }
}

async fn ui_loop(
    app: &mut App,
    source: Source,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut disconnected: Option<watch::Receiver<Option<chrono::DateTime<chrono::Utc>>>>,
    read_only: bool,
) -> anyhow::Result<()> {
    let source = Arc::new(source);
    let mut term_sig = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let _guard = TerminalGuard::enter()?;
    let mut terminal =
        Terminal::new(CrosstermBackend::new(std::io::stdout())).context("opening the terminal")?;
    let mut events = spawn_reader();
    let (done_tx, mut done_rx) = mpsc::channel::<(
        &'static str,
        bool,
        String,
        Option<ecom_model::report::Report>,
    )>(8);
    let mut tick = tokio::time::interval(Duration::from_millis(app.refresh_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Who we are is looked up once (a passwd lookup may go to the network), not per key.
    let origin = ecom_pipeline::command::current_origin("dashboard", read_only);
    let mut snap = snapshots.borrow_and_update().clone();
    let mut dirty = true;
    // False once the pipeline (or the attached instance) is gone: stop waiting on its channel.
    let mut live = true;
    loop {
        if dirty {
            // Disconnected, the ages stay where the last snapshot left them.
            app.clock = app.disconnected_since.is_none().then(chrono::Utc::now);
            // Synchronized updates: the terminal shows whole frames only, even over slow links.
            execute!(terminal.backend_mut(), BeginSynchronizedUpdate)?;
            terminal.draw(|f| ecom_ui::draw(f, app, &snap))?;
            execute!(terminal.backend_mut(), EndSynchronizedUpdate)?;
            dirty = false;
        }
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    Event::Key(key) => match handle_key(app, key, &snap, &source, &done_tx, &origin) {
                        Step::Quit => break,
                        Step::Redraw => dirty = true,
                        Step::Rate(ms) => {
                            tick = tokio::time::interval(Duration::from_millis(ms));
                            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            dirty = true;
                        }
                        Step::Nothing => {}
                    },
                    Event::Resize(..) => {
                        terminal.autoresize()?;
                        dirty = true;
                    }
                    _ => {}
                }
            }
            changed = snapshots.changed(), if live => {
                if changed.is_err() {
                    app.message = Some((false, "the pipeline stopped; showing its last state".into()));
                    live = false;
                } else {
                    snap = snapshots.borrow_and_update().clone();
                    app.clamp(&snap);
                }
                dirty = true;
            }
            Ok(()) = async {
                match disconnected.as_mut() {
                    Some(rx) => rx.changed().await.map_err(|_| ()),
                    None => std::future::pending().await,
                }
            } => {
                let since = disconnected.as_mut().and_then(|rx| *rx.borrow_and_update());
                app.message = Some(match since {
                    Some(_) => (false, "the instance went away; reconnecting every 2 s".into()),
                    None => (true, "reconnected".into()),
                });
                app.disconnected_since = since;
                dirty = true;
            }
            Some((name, ok, message, report)) = done_rx.recv() => {
                app.finished_command(name, ok, message);
                if let Some(r) = &report {
                    app.answered(r);
                }
                dirty = true;
            }
            _ = tick.tick() => dirty = true,
            _ = term_sig.recv() => break,
            _ = hup.recv() => break,
            _ = int.recv() => break,
        }
    }
    Ok(())
}

enum Step {
    Nothing,
    Redraw,
    Quit,
    Rate(u64),
}

fn handle_key(
    app: &mut App,
    key: KeyEvent,
    snap: &Snapshot,
    source: &Arc<Source>,
    done: &mpsc::Sender<(
        &'static str,
        bool,
        String,
        Option<ecom_model::report::Report>,
    )>,
    origin: &Origin,
) -> Step {
    match app.on_key(key, snap) {
        Effect::None => Step::Nothing,
        Effect::Redraw => Step::Redraw,
        Effect::Quit => Step::Quit,
        Effect::RefreshRate(ms) => Step::Rate(ms),
        Effect::Dispatch(command) => {
            let source = source.clone();
            let done = done.clone();
            let origin = origin.clone();
            tokio::spawn(async move {
                let name = command.name();
                let outcome = source.send(command, origin).await;
                // Every key gets its answer in the status line, `r` included.
                let mut said = crate::render::summary(&outcome);
                if outcome.ok
                    && matches!(outcome.report, Some(ecom_model::report::Report::Refreshed))
                {
                    said = format!("refreshed at {}", chrono::Local::now().format("%H:%M:%S"));
                }
                let _ = done.send((name, outcome.ok, said, outcome.report)).await;
            });
            Step::Redraw
        }
    }
}
