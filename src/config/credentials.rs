//! The credentials a configuration names, judged alike by `check` and `run`
//! (one function, so `check` cannot say "ok" to a config `run` refuses).
//!
//! The one difference is [`Stage`]: a secret file that is not there (or not
//! readable by whoever runs `check`) is a warning in `check`, because
//! systemd credentials (`LoadCredential`) and Kubernetes secrets appear only
//! inside the service; `run` refuses to start without it. A file that is
//! there is read by both, and an empty one is an error in both.

use std::io::ErrorKind;
use std::path::Path;

use super::{Config, ConfigError, SecretSource};
use crate::secret::Secret;

/// Who judges: `linkfresh check` or `linkfresh run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `check`: a secret file absent here is a warning.
    Check,
    /// `run`: every configured secret must be readable and non-empty.
    Run,
}

/// The credentials, read.
#[derive(Debug)]
pub(crate) struct Credentials {
    /// `[moneykit] client_id` (or `MONEYKIT_CLIENT_ID`).
    pub(crate) client_id: String,
    /// The client secret; `None` only in [`Stage::Check`] when its file is
    /// not readable here (then `warnings` says so).
    pub(crate) client_secret: Option<Secret>,
    /// What `check` should warn about.
    pub(crate) warnings: Vec<String>,
}

/// Reads and judges the credentials of `config`.
pub(crate) fn credentials(config: &Config, stage: Stage) -> Result<Credentials, ConfigError> {
    let file = config.path.display().to_string();
    let client_id = config
        .moneykit
        .client_id
        .clone()
        .ok_or_else(|| ConfigError::Missing {
            file: file.clone(),
            key: "[moneykit] client_id".into(),
            help: "set it in the file or with MONEYKIT_CLIENT_ID".into(),
        })?;
    let mut warnings = Vec::new();
    let mut read = |key: &str, source: &SecretSource| match source {
        SecretSource::Missing => Ok(None),
        SecretSource::Inline(s) => Ok(Some(s.clone())),
        SecretSource::File(path) => read_file(&file, key, path, stage, &mut warnings),
    };
    let client_secret = read(
        "[moneykit] client_secret_file",
        &config.moneykit.client_secret,
    )?;
    // Judged here (readable, not empty); the server reads it when it starts.
    read("[server] admin_token_file", &config.server.admin_token)?;
    if config.moneykit.client_secret == SecretSource::Missing {
        return Err(ConfigError::Missing {
            file,
            key: "[moneykit] client_secret".into(),
            help: "set client_secret_file, client_secret, MONEYKIT_CLIENT_SECRET, or LoadCredential=client_secret under systemd".into(),
        });
    }
    Ok(Credentials {
        client_id,
        client_secret,
        warnings,
    })
}

fn read_file(
    file: &str,
    key: &str,
    path: &Path,
    stage: Stage,
    warnings: &mut Vec<String>,
) -> Result<Option<Secret>, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        value: format!("{:?}", path.display().to_string()),
        problem,
    };
    match std::fs::read_to_string(path) {
        Err(e)
            if stage == Stage::Check
                && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) =>
        {
            warnings.push(format!(
                "{key} = {:?}: {e} here; run refuses to start unless it can read it (fine if it appears only inside the service, as systemd credentials do)",
                path.display().to_string()
            ));
            Ok(None)
        }
        Err(e) => Err(invalid(format!("cannot be read: {e}"))),
        Ok(text) => {
            let value = text.trim_end_matches(['\r', '\n']);
            if value.trim().is_empty() {
                Err(invalid("the file is empty; put the secret in it".into()))
            } else {
                Ok(Some(Secret::new(value)))
            }
        }
    }
}
