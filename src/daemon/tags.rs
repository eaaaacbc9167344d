//! MoneyKit `link_tags` learned by reading a link: they may select another
//! profile (see [`crate::policy::profile`]). The table takes the new profile
//! at once, so the link's next POST already follows it, and the store keeps
//! the tags for `explain`, the pages and the next start.

use super::scheduler::Scheduler;

impl Scheduler {
    /// Applies the tags a `GET /links/{id}` returned for link `idx`. Writes
    /// only when they change the link's profile: a fleet's reconciliation
    /// at start must not cost a store write per link for tags no profile
    /// names.
    pub(super) fn learned_tags(&mut self, idx: usize, tags: &[String]) {
        if self
            .rules
            .profiles
            .named()
            .iter()
            .all(|p| p.tags.is_empty())
        {
            return;
        }
        if !self.table.retag(idx, tags) {
            return;
        }
        let entry = self.table.get(idx);
        tracing::info!(link = %entry.id, profile = %entry.profile().name, "link tags select a profile");
        let (store, id, tags) = (self.store.clone(), entry.id.clone(), tags.to_vec());
        self.tasks.spawn(async move {
            if let Err(e) = store.set_tags(&id, &tags).await {
                tracing::warn!(link = %id, error = %e, "could not store the link's tags; they are read again at the next reconciliation");
            }
        });
    }
}
