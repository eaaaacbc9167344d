//! The command line: the composition root. `main.rs` calls [`main`], which
//! parses arguments, sets up logging and hands over to one command module.
//!
//! Exit codes (stable): 0 ok, 1 runtime failure, 2 bad configuration or usage.

mod check;
mod demo;
mod events;
pub(crate) mod ops;
mod plan;
mod plan_cost;
mod serve;
mod table;

pub use crate::secret::redact_url;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigError};
use crate::telemetry::{self, LogFormat};

/// Exit code for a runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad configuration or usage.
pub const EXIT_USAGE: u8 = 2;

/// linkfresh keeps MoneyKit links fresh: it requests a refresh of every
/// configured product as often as wanted and allowed, never sooner, in as few
/// POSTs as possible.
#[derive(Debug, Parser)]
#[command(name = "linkfresh", version, about, long_about = None)]
pub struct Cli {
    /// Log format: human or json (also LINKFRESH_LOG_FORMAT); level from RUST_LOG.
    #[arg(
        long,
        global = true,
        env = "LINKFRESH_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command that reads the configuration.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file (default: $LINKFRESH_CONFIG, else ./linkfresh.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    /// Loads and checks the configuration.
    pub fn load(&self) -> Result<Config, ConfigError> {
        config::load(&config::resolve_path(self.config.as_deref()))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Run(ConfigArg),
    /// Validate the configuration, print a summary, exit 0 (ok) or 2 (bad).
    Check(ConfigArg),
    /// Per link and product: last requested, next due, state and why.
    Status(ops::StatusArgs),
    /// The POSTs the daemon would send over a horizon, if all were accepted.
    Plan(plan::PlanArgs),
    /// Each product of one link: due when, and why not now.
    Explain(ops::LinkArgs),
    /// Stop refreshing a link until `resume`.
    Pause(ops::LinkArgs),
    /// Resume a paused or parked link.
    Resume(ops::LinkArgs),
    /// Ask for a refresh as soon as the windows allow (never sooner).
    Refresh(ops::RefreshArgs),
    /// Remove a link added through the admin API (config links: edit the config).
    Remove(ops::LinkArgs),
    /// Outbound events: pending (or --failed) with ages; --replay ID.
    Events(events::EventsArgs),
    /// The link's user is active now: its profile's `active` cadence applies
    /// for `active_for` (the offline counterpart of `POST .../activity`).
    Touch(ops::LinkArgs),
    /// The built-in simulator and the daemon, with windows of seconds.
    Demo(demo::DemoArgs),
    /// The MoneyKit simulator on its own.
    Sim(serve::SimArgs),
}

/// Parses the command line and runs the command; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own lines; logs would drown them unless asked for.
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    telemetry::init(cli.log_format, default_level);
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Plan(args) => plan::run(&args),
        command => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(async move {
                match command {
                    Command::Run(args) => serve::run(&args).await,
                    Command::Status(args) => ops::status(&args).await,
                    Command::Explain(args) => ops::explain(&args).await,
                    Command::Pause(args) => ops::pause(&args, true).await,
                    Command::Resume(args) => ops::pause(&args, false).await,
                    Command::Refresh(args) => ops::refresh(&args).await,
                    Command::Remove(args) => ops::remove(&args).await,
                    Command::Events(args) => events::run(&args).await,
                    Command::Touch(args) => ops::touch(&args).await,
                    Command::Demo(args) => demo::run(&args).await,
                    Command::Sim(args) => serve::sim(&args).await,
                    Command::Check(_) | Command::Plan(_) => unreachable!("handled above"),
                }
            }),
            Err(e) => Err(Failure::Runtime(anyhow::anyhow!(
                "cannot start the async runtime: {e}"
            ))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad configuration: exit 2.
    Config(ConfigError),
    /// Bad arguments: exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Runtime(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}
