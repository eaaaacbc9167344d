//! Long-running commands: `run` (the daemon) and `sim` (the simulator alone).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{ConfigArg, Failure};
use crate::app::{Application, Options};
use crate::daemon::DaemonError;
use crate::shutdown::{shutdown_signal, token_on};

impl From<DaemonError> for Failure {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::Config(msg) => Failure::Usage(msg),
            DaemonError::Runtime(e) => Failure::Runtime(e),
        }
    }
}

/// Runs `run`: the daemon until SIGTERM/SIGINT.
pub async fn run(args: &ConfigArg) -> Result<(), Failure> {
    let config = args.load()?;
    let options = Options {
        watch_config: true,
        reload_on_sighup: true,
        ..Options::default()
    };
    // SIGTERM's handler first: from now on it is a clean stop.
    let cancel = token_on(shutdown_signal());
    let app = Application::build(config, options).await?;
    app.run_until_stopped(cancel).await?;
    Ok(())
}

/// Arguments of `sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A TOML file whose `[sim]` table configures the simulator (windows,
    /// links, faults); defaults to MoneyKit's documented behaviour.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Runs `sim`: the MoneyKit simulator until SIGTERM/SIGINT.
pub async fn sim(args: &SimArgs) -> Result<(), Failure> {
    let cfg = match &args.config {
        Some(path) => crate::sim::load_config(path).map_err(|e| Failure::Usage(e.to_string()))?,
        None => crate::sim::SimConfig::default(),
    };
    eprintln!(
        "MoneyKit simulator on http://{}  (client_id {:?}, client_secret {:?}; stats at /_sim/stats)",
        args.listen, cfg.client_id, cfg.client_secret
    );
    crate::sim::run_standalone(args.listen, cfg, shutdown_signal())
        .await
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("simulator on {}: {e}", args.listen)))
}
