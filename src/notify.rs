//! Service-manager notifications (the `sd_notify` protocol).
//!
//! The systemd unit runs the daemon as `Type=notify` with `WatchdogSec=`, so
//! systemd waits for our `READY=1` before it considers the service started,
//! and kills and restarts it when the watchdog pings stop. This module is the
//! daemon's only way to speak that protocol.
//!
//! Every function is a no-op when `NOTIFY_SOCKET` is unset (a terminal, a
//! container, a test), so callers never need to know how they were started.
//! Send failures are logged, never returned: a lost notification must not stop
//! the daemon, and systemd notices a missing `READY=1` or ping on its own.
//!
//! Unlike `sd_notify(3)` with `unset_environment`, nothing here removes
//! `NOTIFY_SOCKET` or `WATCHDOG_USEC` from the environment: the watchdog pings
//! need them for the whole life of the process (and removing them would need
//! `unsafe`, which this crate forbids).

use std::env;
use std::time::Duration;

use sd_notify::NotifyState;

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Whether a service manager is listening: `NOTIFY_SOCKET` is set and non-empty.
fn enabled() -> bool {
    env::var_os(NOTIFY_SOCKET).is_some_and(|s| !s.is_empty())
}

fn send(what: &str, states: &[NotifyState<'_>]) {
    if !enabled() {
        return;
    }
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(notification = what, error = %err, "could not notify the service manager");
    }
}

/// Tells systemd that start-up is complete: the store is migrated and the
/// first access token obtained.
///
/// Exists because the unit is `Type=notify`: until this is sent, `systemctl
/// start` blocks and units ordered after linkfresh wait. Also send it after a
/// reload has finished (after [`reloading`]) to return the unit to "active".
pub fn ready() {
    send("READY", &[NotifyState::Ready]);
}

/// Tells systemd that a configuration reload (SIGHUP) has started.
///
/// Sends `RELOADING=1` together with `MONOTONIC_USEC`, which systemd 253+
/// requires for `Type=notify-reload` (without it the reload is treated as
/// failed); older versions and `Type=notify` ignore the extra field. Call
/// [`ready`] once the new configuration is in force, so `systemctl reload`
/// returns only then.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send("RELOADING", &[NotifyState::Reloading, now]),
        Err(err) => {
            tracing::warn!(error = %err, "could not read the monotonic clock for RELOADING");
            send("RELOADING", &[NotifyState::Reloading]);
        }
    }
}

/// Tells systemd that the daemon is shutting down on purpose.
///
/// Exists so that a graceful drain (in-flight requests finishing after
/// SIGTERM) shows as "deactivating" and is not mistaken for a hang.
pub fn stopping() {
    send("STOPPING", &[NotifyState::Stopping]);
}

/// Sets the one-line status shown by `systemctl status linkfresh`.
///
/// Exists so an operator sees what the daemon is doing ("waiting for token",
/// "42 links, next POST in 3m") without reading logs. Newlines would end the
/// field early in the protocol, so they are replaced by spaces.
pub fn status(msg: &str) {
    let line = msg.replace(['\n', '\r'], " ");
    send("STATUS", &[NotifyState::Status(&line)]);
}

/// How often the daemon should call [`watchdog_ping`], or `None` when no
/// watchdog is armed for this process.
///
/// That is half of `WATCHDOG_USEC` (the interval systemd recommends, leaving
/// a full half-period of slack), and only when `WATCHDOG_PID` is unset or names
/// this process, so a child that inherited the variables does not ping for its
/// parent. `None` as well when `NOTIFY_SOCKET` is unset (pings could not be
/// delivered) or the timeout is zero.
pub fn watchdog_interval() -> Option<Duration> {
    if !enabled() {
        return None;
    }
    sd_notify::watchdog_enabled()
        .filter(|timeout| !timeout.is_zero())
        .map(|timeout| timeout / 2)
}

/// Tells systemd the run loop is alive (`WATCHDOG=1`).
///
/// Exists because `WatchdogSec=` makes systemd kill and restart a service whose
/// pings stop: call it from the loop itself (not from a separate timer task)
/// every [`watchdog_interval`], so a hung loop really does stop the pings.
pub fn watchdog_ping() {
    send("WATCHDOG", &[NotifyState::Watchdog]);
}
