//! The access-token cache: one token shared by every task, renewed ahead of
//! expiry, and renewed at most once per generation however many requests
//! see it fail (single-flight).

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::secret::Secret;

use super::outcome::AuthError;

/// A token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: Secret,
    /// Bumped on every issue; a 401 names the generation it saw, so only the
    /// first task to report a stale generation renews.
    pub generation: u64,
    /// Renew from here on (ahead of expiry).
    pub renew_at: Instant,
    /// After this the server refuses it.
    pub expires_at: Instant,
}

#[derive(Default)]
struct Slot {
    token: Option<Token>,
    generation: u64,
    /// Sticky: once the credentials are refused, no further token requests.
    fatal: Option<AuthError>,
}

/// The cache; `fetch` is the one call that talks to `/auth/token`.
#[derive(Default)]
pub(crate) struct TokenCache {
    slot: Mutex<Slot>,
}

/// When to renew a token that lives `expires_in`: at
/// `max(0.8 * expires_in, expires_in - 60 s)` after issue, so both hour-long
/// and seconds-long tokens are renewed before the server refuses them.
pub fn renew_after(expires_in: Duration) -> Duration {
    let early = expires_in.mul_f64(0.8);
    let late = expires_in.saturating_sub(Duration::from_secs(60));
    early.max(late)
}

impl TokenCache {
    /// A usable token. `stale` is the generation a request saw refused with
    /// 401: if that is still the current one, it is renewed; if another task
    /// already renewed, the newer token is returned without a request.
    ///
    /// The lock is held across the fetch, so concurrent callers wait for one
    /// renewal instead of starting their own.
    pub async fn get<F, Fut>(&self, stale: Option<u64>, fetch: F) -> Result<Token, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Secret, Duration), AuthError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(fatal) = &slot.fatal {
            return Err(fatal.clone());
        }
        let now = Instant::now();
        if let Some(t) = &slot.token
            && Some(t.generation) != stale
            && now < t.renew_at
        {
            return Ok(t.clone());
        }
        let issued = Instant::now();
        match fetch().await {
            Ok((value, expires_in)) => {
                slot.generation += 1;
                let token = Token {
                    value,
                    generation: slot.generation,
                    renew_at: issued + renew_after(expires_in),
                    expires_at: issued + expires_in,
                };
                slot.token = Some(token.clone());
                Ok(token)
            }
            Err(e) if e.is_fatal() => {
                slot.token = None;
                slot.fatal = Some(e.clone());
                Err(e)
            }
            Err(e) => match &slot.token {
                // Renewal ahead of expiry failed; the old token still works.
                Some(t) if Some(t.generation) != stale && Instant::now() < t.expires_at => {
                    Ok(t.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Whether a token is cached and not yet due for renewal.
    pub async fn is_fresh(&self) -> bool {
        let slot = self.slot.lock().await;
        slot.token
            .as_ref()
            .is_some_and(|t| Instant::now() < t.renew_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_happens_at_eighty_percent_or_a_minute_early_whichever_is_later() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            renew_after(Duration::from_secs(2)),
            Duration::from_millis(1600)
        );
        assert_eq!(renew_after(Duration::from_secs(0)), Duration::ZERO);
    }
}
