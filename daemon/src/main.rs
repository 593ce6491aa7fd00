//! The `tokend` binary: parse arguments, load the config, set up logging, call [`tokend::run`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tokend::Config;
use tokend::config::{ConfigError, LogFormat};

#[derive(Parser)]
#[command(version, about = "Token-verification sidecar for Authentik")]
struct Cli {
    /// Configuration file [default: /etc/tokend/tokend.toml; `dev`: none, embedded defaults].
    #[arg(long, short, global = true, env = "TOKEND_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration, print it with secrets redacted, exit non-zero on error.
    CheckConfig,
    /// Check a deployment: config, provider, issuer, keys, client secret, clock, socket
    /// directory; one line per check with the fix, exit non-zero when one fails.
    Doctor {
        /// Print a JSON array of {check, ok, detail, fix}.
        #[arg(long)]
        json: bool,
    },
    /// Run with a built-in development issuer on loopback (NOT FOR PRODUCTION): mint tokens
    /// with `POST /dev/token`, log in through the flow without Authentik.
    Dev {
        /// Loopback address of the HTTP listener [default: the file's listen.http, or
        /// 127.0.0.1:9180]; `127.0.0.1:0` picks a free port (the banner shows it).
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// Unix socket [default: $XDG_RUNTIME_DIR/tokend-dev/tokend.sock, or
        /// /tmp/tokend-dev-<uid>/tokend.sock].
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, …) to stdout; the Debian
    /// package installs them (packaging/deb/build).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (tokend.1 and one per subcommand, e.g. tokend-check-config.1) into
    /// DIR; the Debian package installs them.
    #[command(hide = true)]
    Manpage { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Completions { shell }) => {
            let mut cmd = without_hidden_subcommands(Cli::command());
            clap_complete::generate(shell, &mut cmd, "tokend", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Some(Command::Manpage { dir }) => {
            return match clap_mangen::generate_to(Cli::command(), &dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "tokend: cannot write the man pages into {}: {e}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    if let Some(Command::Dev { http, socket }) = cli.command {
        let opts = tokend::dev::DevOptions {
            config: cli.config,
            http,
            socket,
        };
        return match dev(opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tokend dev: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let path = cli
        .config
        .unwrap_or_else(|| PathBuf::from(tokend::config::DEFAULT_PATH));
    if let Some(Command::Doctor { json }) = cli.command {
        return doctor(&path, json);
    }
    let config = match Config::load(&path, Config::process_env()) {
        Ok(c) => c,
        Err(e @ ConfigError::Missing { .. }) => {
            eprintln!("tokend: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("tokend: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            print!("{}", config.to_redacted_toml());
            for w in config.warnings() {
                eprintln!("tokend: warning: {w}");
            }
            eprintln!("tokend: {} is valid", path.display());
            ExitCode::SUCCESS
        }
        // All answered above, before the config is loaded.
        Command::Doctor { .. }
        | Command::Dev { .. }
        | Command::Completions { .. }
        | Command::Manpage { .. } => ExitCode::FAILURE,
        Command::Run => {
            let json_log = matches!(config.log.format, LogFormat::Json);
            match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                // Said once: in the log's own format when that is JSON, else plainly.
                Err(e) if json_log => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("tokend: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `cmd` without its hidden subcommands (`completions`, `manpage`), which clap_complete would
/// offer otherwise.
fn without_hidden_subcommands(cmd: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut out = clap::Command::new("tokend")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .subcommands(visible);
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out
}

fn doctor(path: &Path, json: bool) -> ExitCode {
    let report = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(tokend::doctor::run(path, Config::process_env())),
        Err(e) => {
            eprintln!("tokend: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!(
        "{}",
        if json {
            report.to_json() + "\n"
        } else {
            report.to_text()
        }
    );
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    init_tracing(&config.log.level, config.log.format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async { tokend::run(config, shutdown_signal()).await })?;
    Ok(())
}

/// `tokend dev`: text logs at `info` (or `TOKEND_LOG`).
fn dev(opts: tokend::dev::DevOptions) -> anyhow::Result<()> {
    init_tracing("info", LogFormat::Text);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async { tokend::dev::run(opts, shutdown_signal()).await })?;
    Ok(())
}

fn init_tracing(level: &str, format: LogFormat) {
    let filter = std::env::var("TOKEND_LOG").unwrap_or_else(|_| level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Registers the SIGTERM and SIGINT handlers at once — before any listener serves, so a
/// SIGTERM that arrives while tokend starts is a graceful stop, not the default kill — and
/// returns a future that resolves on either. Call it inside the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
