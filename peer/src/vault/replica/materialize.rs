//! Keeping the home's materialized view ([`crate::vault::view`]) in step with the log: the
//! items each commit changed are sealed again into their rows, after the commit.

use std::collections::BTreeSet;

use super::Replica;
use crate::ids::ItemId;
use crate::vault::store::LogStore;
use crate::vault::view::ViewUpdate;

/// What of the view this replica still has to write.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Items changed since the view was last written.
    dirty: BTreeSet<ItemId>,
    /// Every row must be written (the state was rebuilt, or the view is not this log's).
    full: bool,
    /// Changes are noted (off while opening: the view then is either this log's, or
    /// written in full).
    tracking: bool,
    /// The owner writes the view when it sees fit ([`Replica::defer_view`]), not after
    /// every commit.
    deferred: bool,
    /// The store refused a whole view: this handle's memory is not the log's (another
    /// handle wrote), so it never writes the view again.
    stuck: bool,
}

impl Pending {
    /// From now on, changes are noted when `store` keeps a view.
    pub(super) fn track(&mut self, store: &impl LogStore) {
        self.tracking = store.keeps_view();
    }

    /// Item `id` changed.
    pub(super) fn changed(&mut self, id: ItemId) {
        if self.tracking {
            self.dirty.insert(id);
        }
    }

    /// The whole state changed.
    pub(super) fn all_changed(&mut self) {
        self.full = true;
    }
}

impl<S: LogStore> Replica<S> {
    /// Commits no longer write the view: the owner calls [`Replica::refresh_view`] when
    /// [`Replica::view_pending`] says so, at its pace. A daemon does (a second after a change
    /// settles, and as it stops): its own reads come from memory, and a sync of many batches
    /// writes each changed row once instead of at every batch.
    pub fn defer_view(&mut self) {
        self.view.deferred = true;
    }

    /// True when the view has changes to write (and this handle can write them).
    pub fn view_pending(&self) -> bool {
        self.view.tracking && !self.view.stuck && (self.view.full || !self.view.dirty.is_empty())
    }

    /// After a commit: the view's rows, unless the owner writes them itself.
    pub(super) fn view_after_commit(&mut self) {
        if !self.view.deferred {
            self.refresh_view();
        }
    }

    /// Writes the rows of the items changed since the view was last written (every row when
    /// the view does not reflect the log this replica holds). Called after every commit, and
    /// by a daemon once it opened its home; a failure is logged, never the caller's: the
    /// commit stands, and readers replay the log until a later write succeeds.
    pub fn refresh_view(&mut self) {
        // A retired vault's reads go through the log, which says so on every command: its
        // view is left behind the log, where readers do not use it.
        if !self.store.keeps_view() || self.retirement().is_some() {
            return;
        }
        for full in [self.view.full, true] {
            let dirty = std::mem::take(&mut self.view.dirty);
            let mut up = ViewUpdate::of(&self.keys, &self.state, dirty, full, self.write_base());
            match self.store.put_view(&mut up) {
                Ok(true) => {
                    self.view.full = false;
                    return;
                }
                // A partial update of a view that is not this log's: write it whole.
                Ok(false) if !full => {}
                Ok(false) => {
                    tracing::debug!("the log moved on under this replica: the view waits for its writer");
                    self.view.full = true;
                    self.view.stuck = true;
                    return;
                }
                Err(e) => {
                    tracing::warn!("the materialized view could not be written (reads replay the log): {e}");
                    self.view.full = true;
                    return;
                }
            }
        }
    }
}
