//! A string that must never be printed: client secrets, admin tokens, access
//! tokens. `Debug` and `Display` print `[redacted]`, so a secret cannot leak
//! through a log line, an error message or a `{:?}` of a config struct.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret value; read it only with [`Secret::expose`] at the point of use.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (not configured).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_string(SecretVisitor)
    }
}

/// Accepts a string; anything else is refused *without* the value serde's
/// default "invalid type: integer `123`" message would quote: a config line
/// `client_secret = 123` must not print the secret back.
struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: serde::de::Error>(&self, kind: &str) -> E {
        E::custom(format!(
            "invalid type: {kind}, expected a string (the value of a secret is not shown)"
        ))
    }
}

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(self.refuse("a boolean"))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(self.refuse("an integer"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(self.refuse("an integer"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(self.refuse("a number"))
    }

    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(self.refuse("bytes"))
    }
}

/// A URL (database, MoneyKit base URL) with any password replaced, for
/// printing; one that does not parse but has user info is not shown at all.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("[redacted]"));
            u.to_string()
        }
        Err(_) if url.contains('@') => "[a URL with user info; not shown]".to_owned(),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_refused_without_its_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct T {
            s: Secret,
        }
        let e = toml::from_str::<T>("s = 987654321").unwrap_err();
        assert!(!e.message().contains("987654321"), "{}", e.message());
        assert!(e.message().contains("expected a string"), "{}", e.message());
    }
}
