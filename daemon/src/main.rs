//! The `tokend` binary: parse arguments, load the config, set up logging, call [`tokend::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokend::Config;
use tokend::config::{ConfigError, LogFormat};

#[derive(Parser)]
#[command(version, about = "Token-verification sidecar for Authentik")]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "TOKEND_CONFIG", default_value = tokend::config::DEFAULT_PATH)]
    config: PathBuf,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Doctor { json }) = cli.command {
        return doctor(&cli.config, json);
    }
    let config = match Config::load(&cli.config, Config::process_env()) {
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
            eprintln!("tokend: {} is valid", cli.config.display());
            ExitCode::SUCCESS
        }
        Command::Doctor { json } => doctor(&cli.config, json),
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

fn doctor(path: &std::path::Path, json: bool) -> ExitCode {
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
    init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(tokend::run(config, shutdown_signal()))?;
    Ok(())
}

fn init_tracing(config: &Config) {
    let filter = std::env::var("TOKEND_LOG").unwrap_or_else(|_| config.log.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
