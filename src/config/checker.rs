//! The checks of single values (durations, products, paths, secrets, the
//! database URL), each naming the file and key of a bad value and what is
//! allowed, for [`check`](super::check) and the links' checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::TimeDelta;

use super::{ConfigError, SecretSource};
use crate::domain::{Product, ProductSet};
use crate::duration;

/// Checks values in the context of one file, so every error can name it.
pub(super) struct Checker<'a> {
    pub(super) file: String,
    pub(super) dir: &'a Path,
}

impl Checker<'_> {
    pub(super) fn invalid(
        &self,
        key: &str,
        value: &str,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            key: key.to_owned(),
            value: format!("{value:?}"),
            problem: problem.into(),
        }
    }

    /// Every duration of the file and environment goes through the one
    /// bounded parse ([`crate::duration`]), so none exceeds 10 years.
    pub(super) fn duration(
        &self,
        key: &str,
        raw: &str,
        zero_ok: bool,
    ) -> Result<Duration, ConfigError> {
        let parsed = if zero_ok {
            duration::parse_duration_bounded_or_zero(raw)
        } else {
            duration::parse_duration_bounded(raw)
        };
        parsed.map_err(|e| self.invalid(key, raw, e.to_string()))
    }

    pub(super) fn delta(
        &self,
        key: &str,
        raw: &str,
        zero_ok: bool,
    ) -> Result<TimeDelta, ConfigError> {
        Ok(duration::to_delta(self.duration(key, raw, zero_ok)?))
    }

    pub(super) fn products(&self, key: &str, names: &[String]) -> Result<ProductSet, ConfigError> {
        let mut set = ProductSet::EMPTY;
        for name in names {
            set.insert(Product::parse(name).map_err(|e| self.invalid(key, name, e.to_string()))?);
        }
        if set.is_empty() {
            return Err(self.invalid(
                key,
                "[]",
                "empty product list; give at least one of accounts, transactions, account_numbers, identity, investments, enrichment",
            ));
        }
        Ok(set)
    }

    pub(super) fn path(&self, raw: &str) -> PathBuf {
        let p = Path::new(raw);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    pub(super) fn secret(
        &self,
        key: &str,
        inline: Option<crate::secret::Secret>,
        file: Option<&str>,
    ) -> Result<SecretSource, ConfigError> {
        match (inline.filter(|s| !s.is_empty()), file) {
            (Some(_), Some(f)) => Err(self.invalid(
                &format!("{key}_file"),
                f,
                format!("both {key} and {key}_file are set; set only one"),
            )),
            (Some(s), None) => Ok(SecretSource::Inline(s)),
            (None, Some(f)) => Ok(SecretSource::File(self.path(f))),
            (None, None) => Ok(SecretSource::Missing),
        }
    }
}

/// The database URL, with a relative SQLite path made absolute.
pub(super) fn database_url(c: &Checker<'_>, raw: &str) -> Result<String, ConfigError> {
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        return Ok(raw.to_owned());
    }
    let Some(rest) = raw.strip_prefix("sqlite:") else {
        // Never echo a URL that might carry a password.
        let scheme = raw.split(':').next().unwrap_or_default();
        return Err(c.invalid(
            "[database] url",
            &format!("{scheme}:..."),
            "unsupported scheme; use sqlite://PATH or postgres://USER@HOST/DB",
        ));
    };
    let path = rest.trim_start_matches("//");
    if path.is_empty() {
        return Err(c.invalid(
            "[database] url",
            raw,
            "no file path; e.g. sqlite://linkfresh.db",
        ));
    }
    if path == ":memory:" || Path::new(path).is_absolute() {
        return Ok(format!("sqlite://{path}"));
    }
    Ok(format!("sqlite://{}", c.path(path).display()))
}
