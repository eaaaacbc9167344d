//! Environment overrides layered over the file: `LINKFRESH__SECTION__KEY`
//! for any key, plus `MONEYKIT_CLIENT_ID` / `MONEYKIT_CLIENT_SECRET`.
//!
//! Environment values are strings by nature; the `config` crate parses each
//! one into the type of its key when the settings are deserialized (its
//! `try_parsing` is off so that `8.5` is not silently truncated to `8`).
//! A value from the environment overrides the file's *source* of a secret:
//! `MONEYKIT_CLIENT_SECRET` replaces a `client_secret_file` of the file
//! instead of conflicting with it (the README's copy-the-example path).

use std::collections::HashMap;
use std::path::Path;

use super::raw::RawSettings;
use crate::secret::Secret;

const PREFIX: &str = "LINKFRESH__";

/// The overrides found in one environment.
pub(super) struct Overrides {
    /// `LINKFRESH__...` variables, as the `config` crate reads them.
    linkfresh: config::Map<String, String>,
    /// `(key, value)` of the `MONEYKIT_...` variables not shadowed by their
    /// explicit `LINKFRESH__MONEYKIT__...` form.
    moneykit: Vec<(&'static str, String)>,
}

impl Overrides {
    /// Collects the variables that override the file.
    pub(super) fn from_env(env: &HashMap<String, String>) -> Self {
        let linkfresh: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let moneykit = [
            ("MONEYKIT_CLIENT_ID", "moneykit.client_id"),
            ("MONEYKIT_CLIENT_SECRET", "moneykit.client_secret"),
        ]
        .into_iter()
        .filter(|(_, key)| !linkfresh.contains_key(&variable(key)))
        .filter_map(|(var, key)| {
            let v = env.get(var).filter(|v| !v.is_empty())?;
            Some((key, v.clone()))
        })
        .collect();
        Self {
            linkfresh,
            moneykit,
        }
    }

    /// Whether the environment overrides nothing (the file alone counts).
    pub(super) fn is_empty(&self) -> bool {
        self.linkfresh.is_empty() && self.moneykit.is_empty()
    }

    /// The file at `path` with the overrides on top.
    pub(super) fn layer(&self, path: &Path) -> Result<RawSettings, config::ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml));
        for (key, value) in &self.moneykit {
            builder = builder.set_override(*key, value.clone())?;
        }
        builder
            .add_source(
                config::Environment::with_prefix("LINKFRESH")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("defaults.products")
                    .with_list_parse_key("discovery.products")
                    .with_list_parse_key("discovery.tags")
                    .source(Some(self.linkfresh.clone())),
            )
            .build()?
            .try_deserialize()
    }

    /// Whether the environment gives `key` (e.g. `moneykit.client_secret`) a
    /// non-empty value.
    fn sets(&self, key: &str) -> bool {
        self.moneykit.iter().any(|(k, _)| *k == key)
            || self
                .linkfresh
                .get(&variable(key))
                .is_some_and(|v| !v.is_empty())
    }

    /// Lets a secret given by the environment (inline or as a file) replace
    /// the file's other form of it. A file that itself sets both forms is
    /// left as it is, so that checking still rejects it.
    pub(super) fn secrets_over_file(&self, file: &RawSettings, layered: &mut RawSettings) {
        self.secret_over_file(
            "moneykit.client_secret",
            (
                &file.moneykit.client_secret,
                &file.moneykit.client_secret_file,
            ),
            (
                &mut layered.moneykit.client_secret,
                &mut layered.moneykit.client_secret_file,
            ),
        );
        self.secret_over_file(
            "server.admin_token",
            (&file.server.admin_token, &file.server.admin_token_file),
            (
                &mut layered.server.admin_token,
                &mut layered.server.admin_token_file,
            ),
        );
    }

    fn secret_over_file(
        &self,
        key: &str,
        file: (&Option<Secret>, &Option<String>),
        layered: (&mut Option<Secret>, &mut Option<String>),
    ) {
        let file_sets_both = file.0.as_ref().is_some_and(|s| !s.is_empty()) && file.1.is_some();
        if file_sets_both {
            return;
        }
        match (self.sets(key), self.sets(&format!("{key}_file"))) {
            (true, false) => *layered.1 = None,
            (false, true) => *layered.0 = None,
            _ => {}
        }
    }
}

/// The variable that sets `key`: `moneykit.max_in_flight` ->
/// `LINKFRESH__MONEYKIT__MAX_IN_FLIGHT`.
fn variable(key: &str) -> String {
    format!("{PREFIX}{}", key.replace('.', "__").to_uppercase())
}

/// The message for an error of the layered settings; a value of the wrong
/// type is blamed on the variable that set it.
pub(super) fn describe(e: &config::ConfigError) -> String {
    let text = e.to_string();
    if let config::ConfigError::Type {
        key: Some(key),
        origin: Some(origin),
        ..
    } = e
        && origin == "the environment"
    {
        let tail = format!(" for key `{key}` in the environment");
        return format!(
            "environment variable {}: {}",
            variable(key),
            text.replace(&tail, "")
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_maps_to_its_variable() {
        assert_eq!(
            variable("moneykit.max_in_flight"),
            "LINKFRESH__MONEYKIT__MAX_IN_FLIGHT"
        );
    }
}
