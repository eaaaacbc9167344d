//! Who this process is among replicas sharing a PostgreSQL store, and
//! whether there can be others at all.

/// Whether other replicas may share this store (PostgreSQL): only then is
/// polling for their claims worth a query a second.
pub(crate) fn is_shared(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// The claim owner name of this process: host (the pod name on Kubernetes),
/// pid and a random suffix, so that a restarted replica never mistakes its
/// predecessor's leases for its own; those simply expire.
pub(crate) fn replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "linkfresh".to_owned());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}
