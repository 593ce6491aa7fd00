//! `tokentop`: the console for tokend (live sessions, exchange-code TTLs, Authentik's event
//! log). Parses the arguments, finds the admin socket, sets the terminal up and runs the
//! loop: keys, the net task's reports, ticks and signals become actions; each is applied
//! with `update` and the screen redrawn. The terminal is restored however it ends.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use crossterm::event::Event;
use tokend_shared::client::AdminClient;
use tokentop::app::{Action, State, update};
use tokentop::terminal::TerminalGuard;
use tokentop::{input, net, socket, ui};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::unbounded_channel;

/// The operator console of tokend: live sessions, exchange-code TTLs, tokend's audit events
/// and Authentik's event log, over tokend's admin socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The admin socket. Default: from --config, else `tokend dev`'s
    /// ($XDG_RUNTIME_DIR/tokend-dev/tokend-admin.sock, or /tmp/tokend-dev-<uid>/…).
    #[arg(long, env = "TOKENTOP_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// tokend's configuration file: the admin socket is its `[admin] socket`, else
    /// `tokend-admin.sock` beside `[listen] socket` (--socket wins over it).
    #[arg(long, env = "TOKEND_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the shell completion script for SHELL to stdout and exit (the Debian package
    /// installs them; packaging/deb/build).
    #[arg(long, hide = true, value_name = "SHELL")]
    completions: Option<clap_complete::Shell>,
    /// Write the man page tokentop.1 into DIR and exit (the Debian package installs it).
    #[arg(long, hide = true, value_name = "DIR")]
    manpage: Option<PathBuf>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(shell) = args.completions {
        // Without the hidden arguments, which clap_complete would offer otherwise.
        let visible = Args::command()
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .cloned()
            .collect::<Vec<_>>();
        let mut cmd = clap::Command::new("tokentop")
            .version(env!("CARGO_PKG_VERSION"))
            .about(Args::command().get_about().cloned().unwrap_or_default())
            .args(visible);
        clap_complete::generate(shell, &mut cmd, "tokentop", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Some(dir) = args.manpage {
        return match clap_mangen::generate_to(Args::command(), &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "tokentop: cannot write the man page into {}: {e}",
                    dir.display()
                );
                ExitCode::FAILURE
            }
        };
    }
    let path = match (args.socket, args.config) {
        (Some(s), _) => s,
        (None, Some(c)) => match socket::from_config_file(&c) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("tokentop: {e}");
                return ExitCode::from(2);
            }
        },
        (None, None) => socket::dev_default(
            std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
            socket::current_uid(),
        ),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokentop: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokentop: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: PathBuf) -> std::io::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut guard = TerminalGuard::setup().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot set up the terminal (tokentop needs one): {e}"),
        )
    })?;
    let theme = ui::Theme::from_env();
    let mut state = State::new(path.display().to_string(), now_ms());

    let (net_tx, mut net_rx) = unbounded_channel();
    let (cmd_tx, cmd_rx) = unbounded_channel();
    let net = tokio::spawn(net::run(AdminClient::new(path), net_tx, cmd_rx));
    // crossterm's reads block: a thread of their own; it ends with the process.
    let (key_tx, mut key_rx) = unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(ev) = crossterm::event::read() {
            if key_tx.send(ev).is_err() {
                break;
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(250));

    while !state.quit {
        guard.terminal.draw(|f| ui::draw(f, &state, theme))?;
        let action = tokio::select! {
            Some(ev) = key_rx.recv() => match ev {
                Event::Key(key) => input::map(&state, key),
                _ => None, // a resize is redrawn by the next draw
            },
            Some(ev) = net_rx.recv() => Some(Action::Net(ev)),
            _ = tick.tick() => Some(Action::Tick(now_ms())),
            _ = sigterm.recv() => Some(Action::Quit),
            _ = sigint.recv() => Some(Action::Quit),
        };
        if let Some(action) = action
            && let Some(cmd) = update(&mut state, action)
        {
            let _ = cmd_tx.send(cmd);
        }
    }
    net.abort();
    drop(guard);
    Ok(())
}
