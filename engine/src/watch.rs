//! Watches as a pure computation (ZooKeeper's `WatchManager`): which watchers
//! an applied txn fires, with one-shot, persistent and persistent-recursive
//! modes. `W` identifies a watcher (a connection or session).
//!
//! There are two tables, data and child, as in ZooKeeper. A watcher has at most
//! one registration per (table, path); registering again replaces the mode.
//! Each trigger fires a watcher at most once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;

use zoocore_net::consts::KeeperState;
use zoocore_net::records::{SetWatches2, WatcherEvent};
use zoocore_net::{Acl, AddWatchMode, ErrorCode, EventType, Request, Response, WatcherType};

use crate::path;
use crate::read::Reply;
use crate::tree::{Applied, DataTree, Deletion};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchMode {
    /// One-shot: removed when it fires.
    Standard,
    /// Fires on its own path for every event, stays.
    Persistent,
    /// Fires for its path and every descendant, except child-list changes.
    PersistentRecursive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Data,
    Child,
}

struct PathWatches<W> {
    by_path: HashMap<String, HashMap<W, WatchMode>>,
    by_watcher: HashMap<W, HashSet<String>>,
    recursive: usize,
}

impl<W: Copy + Eq + Hash + Ord> PathWatches<W> {
    fn new() -> Self {
        PathWatches {
            by_path: HashMap::new(),
            by_watcher: HashMap::new(),
            recursive: 0,
        }
    }

    fn add(&mut self, p: &str, w: W, mode: WatchMode) {
        let previous = self
            .by_path
            .entry(p.to_owned())
            .or_default()
            .insert(w, mode);
        self.recursive += usize::from(mode == WatchMode::PersistentRecursive);
        self.recursive -= usize::from(previous == Some(WatchMode::PersistentRecursive));
        self.by_watcher.entry(w).or_default().insert(p.to_owned());
    }

    fn remove(&mut self, p: &str, w: W) -> bool {
        let Some(watchers) = self.by_path.get_mut(p) else {
            return false;
        };
        let Some(mode) = watchers.remove(&w) else {
            return false;
        };
        self.recursive -= usize::from(mode == WatchMode::PersistentRecursive);
        if watchers.is_empty() {
            self.by_path.remove(p);
        }
        if let Some(paths) = self.by_watcher.get_mut(&w) {
            paths.remove(p);
            if paths.is_empty() {
                self.by_watcher.remove(&w);
            }
        }
        true
    }

    fn remove_watcher(&mut self, w: W) {
        for p in self.by_watcher.remove(&w).unwrap_or_default() {
            if let Some(watchers) = self.by_path.get_mut(&p) {
                if watchers.remove(&w) == Some(WatchMode::PersistentRecursive) {
                    self.recursive -= 1;
                }
                if watchers.is_empty() {
                    self.by_path.remove(&p);
                }
            }
        }
    }

    /// Fires watchers for an event on `p`; returns who fired, in watcher order.
    /// Suppressed watchers do not fire but still lose their one-shot watch.
    fn trigger(&mut self, p: &str, event: EventType, suppress: &BTreeSet<W>) -> BTreeSet<W> {
        let mut fired = BTreeSet::new();
        let mut consumed = Vec::new();
        let mut at = Some(p);
        let mut exact = true;
        while let Some(current) = at {
            if let Some(watchers) = self.by_path.get(current) {
                for (&w, &mode) in watchers {
                    match mode {
                        WatchMode::PersistentRecursive
                            if event != EventType::NodeChildrenChanged =>
                        {
                            fired.insert(w);
                        }
                        WatchMode::Persistent if exact => {
                            fired.insert(w);
                        }
                        WatchMode::Standard if exact => {
                            fired.insert(w);
                            consumed.push(w);
                        }
                        _ => {}
                    }
                }
            }
            // Ancestors matter only to recursive watches.
            at = if self.recursive > 0 && current != "/" {
                path::split(current).map(|(parent, _)| path::parent_for_events(parent))
            } else {
                None
            };
            exact = false;
        }
        for w in consumed {
            self.remove(p, w);
        }
        fired.retain(|w| !suppress.contains(w));
        fired
    }
}

pub struct WatchTable<W> {
    data: PathWatches<W>,
    child: PathWatches<W>,
}

impl<W: Copy + Eq + Hash + Ord> Default for WatchTable<W> {
    fn default() -> Self {
        WatchTable {
            data: PathWatches::new(),
            child: PathWatches::new(),
        }
    }
}

/// A watch event for one watcher.
pub type Notification<W> = (W, WatcherEvent);

fn event(kind: EventType, p: &str) -> WatcherEvent {
    WatcherEvent {
        event_type: kind.code(),
        state: KeeperState::SyncConnected.code(),
        path: p.to_owned(),
    }
}

impl<W: Copy + Eq + Hash + Ord> WatchTable<W> {
    fn table(&mut self, t: Table) -> &mut PathWatches<W> {
        match t {
            Table::Data => &mut self.data,
            Table::Child => &mut self.child,
        }
    }

    /// One-shot watch from exists/getData (data table) or getChildren (child table).
    pub fn add(&mut self, t: Table, p: &str, w: W) {
        self.table(t).add(p, w, WatchMode::Standard);
    }

    /// addWatch: registers in both tables.
    pub fn add_persistent(&mut self, p: &str, w: W, recursive: bool) {
        let mode = if recursive {
            WatchMode::PersistentRecursive
        } else {
            WatchMode::Persistent
        };
        self.child.add(p, w, mode);
        self.data.add(p, w, mode);
    }

    /// removeWatches for this watcher on exactly `p`; false if none was removed.
    pub fn remove(&mut self, p: &str, w: W, kind: WatcherType) -> bool {
        let child =
            matches!(kind, WatcherType::Children | WatcherType::Any) && self.child.remove(p, w);
        let data = matches!(kind, WatcherType::Data | WatcherType::Any) && self.data.remove(p, w);
        child || data
    }

    /// checkWatches: whether this watcher watches exactly `p` in the table(s),
    /// as ZooKeeper 3.9 answers. (3.8 answered yes if any connection watched
    /// the path, a bug fixed in 3.9.)
    pub fn contains(&self, p: &str, w: W, kind: WatcherType) -> bool {
        let has = |t: &PathWatches<W>| t.by_path.get(p).is_some_and(|ws| ws.contains_key(&w));
        match kind {
            WatcherType::Children => has(&self.child),
            WatcherType::Data => has(&self.data),
            WatcherType::Any => has(&self.child) || has(&self.data),
        }
    }

    /// Drops every watch of a watcher (its connection closed).
    pub fn remove_watcher(&mut self, w: W) {
        self.data.remove_watcher(w);
        self.child.remove_watcher(w);
    }

    /// The data table (exists/getData and persistent watches), path by path,
    /// as ZooKeeper's `wchp`/`wchc`/`wchs` show it.
    pub fn data_watches(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = W> + '_)> {
        self.data
            .by_path
            .iter()
            .map(|(p, watchers)| (p.as_str(), watchers.keys().copied()))
    }

    pub fn watch_count(&self) -> usize {
        self.data.by_path.values().map(HashMap::len).sum::<usize>()
            + self.child.by_path.values().map(HashMap::len).sum::<usize>()
    }

    /// Fires the watches of an applied txn, in ZooKeeper's order. An event
    /// reaches a watcher only if `can_read(watcher, acl)` holds for the ACL of
    /// the node it is about; a one-shot watch is used up either way.
    pub fn fire(
        &mut self,
        applied: &Applied,
        can_read: &mut dyn FnMut(W, &[Acl]) -> bool,
    ) -> Vec<Notification<W>> {
        let mut out = Vec::new();
        self.fire_into(applied, can_read, &mut out);
        out
    }

    fn fire_into(
        &mut self,
        applied: &Applied,
        can_read: &mut dyn FnMut(W, &[Acl]) -> bool,
        out: &mut Vec<Notification<W>>,
    ) {
        let none = BTreeSet::new();
        match applied {
            Applied::Created {
                path: p,
                acl,
                parent_acl,
                ..
            } => {
                let fired = self.data.trigger(p, EventType::NodeCreated, &none);
                deliver(fired, EventType::NodeCreated, p, acl, can_read, out);
                self.fire_parent(p, parent_acl, can_read, out);
            }
            Applied::Deleted(deletion) => self.fire_deleted(deletion, can_read, out),
            Applied::SessionClosed { deleted } => {
                for deletion in deleted {
                    self.fire_deleted(deletion, can_read, out);
                }
            }
            Applied::DataSet { path: p, acl, .. } => {
                let fired = self.data.trigger(p, EventType::NodeDataChanged, &none);
                deliver(fired, EventType::NodeDataChanged, p, acl, can_read, out);
            }
            Applied::Multi(ops) => {
                for op in ops {
                    self.fire_into(op, can_read, out);
                }
            }
            Applied::AclSet { .. }
            | Applied::Checked
            | Applied::SessionCreated
            | Applied::Error(_)
            | Applied::MultiError(_) => {}
        }
    }

    fn fire_deleted(
        &mut self,
        deletion: &Deletion,
        can_read: &mut dyn FnMut(W, &[Acl]) -> bool,
        out: &mut Vec<Notification<W>>,
    ) {
        let p = &deletion.path;
        let data = self
            .data
            .trigger(p, EventType::NodeDeleted, &BTreeSet::new());
        let child = self.child.trigger(p, EventType::NodeDeleted, &data);
        deliver(
            data.into_iter().chain(child),
            EventType::NodeDeleted,
            p,
            &deletion.acl,
            can_read,
            out,
        );
        self.fire_parent(p, &deletion.parent_acl, can_read, out);
    }

    fn fire_parent(
        &mut self,
        p: &str,
        parent_acl: &[Acl],
        can_read: &mut dyn FnMut(W, &[Acl]) -> bool,
        out: &mut Vec<Notification<W>>,
    ) {
        let Some((parent, _)) = path::split(p) else {
            return;
        };
        let parent = path::parent_for_events(parent);
        let fired = self
            .child
            .trigger(parent, EventType::NodeChildrenChanged, &BTreeSet::new());
        deliver(
            fired,
            EventType::NodeChildrenChanged,
            parent,
            parent_acl,
            can_read,
            out,
        );
    }

    /// setWatches/setWatches2 after a reconnect: events for what changed since
    /// `relative_zxid` are returned at once; the rest is registered.
    pub fn set_watches(
        &mut self,
        tree: &DataTree,
        w: W,
        request: &SetWatches2,
    ) -> Vec<WatcherEvent> {
        let rel = request.relative_zxid;
        let mut events = Vec::new();
        for p in &request.data_watches {
            match tree.get(p) {
                None => events.push(event(EventType::NodeDeleted, p)),
                Some(n) if n.stat.mzxid > rel => events.push(event(EventType::NodeDataChanged, p)),
                Some(_) => self.add(Table::Data, p, w),
            }
        }
        for p in &request.exist_watches {
            match tree.get(p) {
                Some(_) => events.push(event(EventType::NodeCreated, p)),
                None => self.add(Table::Data, p, w),
            }
        }
        for p in &request.child_watches {
            match tree.get(p) {
                None => events.push(event(EventType::NodeDeleted, p)),
                Some(n) if n.stat.pzxid > rel => {
                    events.push(event(EventType::NodeChildrenChanged, p))
                }
                Some(_) => self.add(Table::Child, p, w),
            }
        }
        for p in &request.persistent_watches {
            self.add_persistent(p, w, false);
        }
        for p in &request.persistent_recursive_watches {
            self.add_persistent(p, w, true);
        }
        events
    }
}

fn deliver<W: Copy>(
    fired: impl IntoIterator<Item = W>,
    kind: EventType,
    p: &str,
    acl: &[Acl],
    can_read: &mut dyn FnMut(W, &[Acl]) -> bool,
    out: &mut Vec<Notification<W>>,
) {
    out.extend(
        fired
            .into_iter()
            .filter(|&w| can_read(w, acl))
            .map(|w| (w, event(kind, p))),
    );
}

/// Serves the watch-management requests (addWatch, removeWatches,
/// checkWatches, setWatches, setWatches2) for watcher `w`: the reply, and the
/// events to send before it.
pub fn handle_watch_request<W: Copy + Eq + Hash + Ord>(
    table: &mut WatchTable<W>,
    tree: &DataTree,
    w: W,
    request: &Request,
) -> Option<(Reply, Vec<WatcherEvent>)> {
    let bad = || {
        (
            (ErrorCode::MarshallingError.code(), Response::Empty),
            Vec::new(),
        )
    };
    let found = |yes: bool| {
        let code = if yes {
            ErrorCode::Ok
        } else {
            ErrorCode::NoWatcher
        };
        ((code.code(), Response::Empty), Vec::new())
    };
    Some(match request {
        Request::AddWatch(r) => match AddWatchMode::from_i32(r.mode) {
            Some(mode) => {
                table.add_persistent(&r.path, w, mode == AddWatchMode::PersistentRecursive);
                ((0, Response::ErrorResponse(0)), Vec::new())
            }
            None => bad(),
        },
        Request::RemoveWatches(r) => match WatcherType::from_i32(r.watcher_type) {
            Some(kind) => found(table.remove(&r.path, w, kind)),
            None => bad(),
        },
        Request::CheckWatches(r) => match WatcherType::from_i32(r.watcher_type) {
            Some(kind) => found(table.contains(&r.path, w, kind)),
            None => bad(),
        },
        Request::SetWatches(r) => {
            let all = SetWatches2 {
                relative_zxid: r.relative_zxid,
                data_watches: r.data_watches.clone(),
                exist_watches: r.exist_watches.clone(),
                child_watches: r.child_watches.clone(),
                ..Default::default()
            };
            ((0, Response::Empty), table.set_watches(tree, w, &all))
        }
        Request::SetWatches2(r) => ((0, Response::Empty), table.set_watches(tree, w, r)),
        _ => return None,
    })
}

/// The watch a read registers, given its reply code: exists watches even a
/// missing node; getData and getChildren only on success.
pub fn watch_for(request: &Request, err: i32) -> Option<(Table, &str)> {
    let ok = err == 0;
    match request {
        Request::Exists(r) if r.watch && (ok || err == ErrorCode::NoNode.code()) => {
            Some((Table::Data, &r.path))
        }
        Request::GetData(r) if r.watch && ok => Some((Table::Data, &r.path)),
        Request::GetChildren(r) | Request::GetChildren2(r) if r.watch && ok => {
            Some((Table::Child, &r.path))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoocore_net::Stat;

    fn open() -> crate::tree::AclList {
        crate::acl::open_acl_unsafe().into()
    }

    fn created(p: &str) -> Applied {
        Applied::Created {
            path: p.into(),
            stat: Stat::default(),
            kind: crate::txn::CreateKind::Plain { ephemeral: false },
            acl: open(),
            parent_acl: open(),
        }
    }

    fn deleted(p: &str) -> Applied {
        Applied::Deleted(Deletion {
            path: p.into(),
            acl: open(),
            parent_acl: open(),
        })
    }

    fn fire(t: &mut WatchTable<u32>, applied: &Applied) -> Vec<Notification<u32>> {
        t.fire(applied, &mut |_, _| true)
    }

    fn kinds(n: &[Notification<u32>]) -> Vec<(u32, i32, &str)> {
        n.iter()
            .map(|(w, e)| (*w, e.event_type, e.path.as_str()))
            .collect()
    }

    #[test]
    fn one_shot_fires_once() {
        let mut t = WatchTable::<u32>::default();
        t.add(Table::Data, "/a", 1);
        assert_eq!(kinds(&fire(&mut t, &created("/a"))), vec![(1, 1, "/a")]);
        assert!(fire(&mut t, &created("/a")).is_empty());
    }

    #[test]
    fn recursive_skips_child_changes_and_covers_descendants() {
        let mut t = WatchTable::<u32>::default();
        t.add_persistent("/a", 7, true);
        let fired = fire(&mut t, &created("/a/b/c"));
        assert_eq!(kinds(&fired), vec![(7, 1, "/a/b/c")]);
        assert_eq!(
            kinds(&fire(&mut t, &created("/a/b/c"))),
            vec![(7, 1, "/a/b/c")]
        );
    }

    #[test]
    fn persistent_gets_child_changes_on_its_own_path() {
        let mut t = WatchTable::<u32>::default();
        t.add_persistent("/a", 1, false);
        assert_eq!(kinds(&fire(&mut t, &created("/a/b"))), vec![(1, 4, "/a")]);
    }

    #[test]
    fn delete_sends_one_event_to_a_data_and_child_watcher() {
        let mut t = WatchTable::<u32>::default();
        t.add(Table::Data, "/a", 1);
        t.add(Table::Child, "/a", 1);
        t.add(Table::Child, "/a", 2);
        let fired = fire(&mut t, &deleted("/a"));
        assert_eq!(kinds(&fired), vec![(1, 2, "/a"), (2, 2, "/a")]);
        assert_eq!(t.watch_count(), 0);
    }

    #[test]
    fn events_reach_only_watchers_that_may_read_and_one_shots_are_used_up() {
        let mut t = WatchTable::<u32>::default();
        t.add(Table::Data, "/a", 1);
        t.add(Table::Data, "/a", 2);
        let fired = t.fire(&created("/a"), &mut |w, _| w == 2);
        assert_eq!(kinds(&fired), vec![(2, 1, "/a")]);
        assert_eq!(t.watch_count(), 0);
    }

    #[test]
    fn removal_and_checks_are_per_watcher() {
        let mut t = WatchTable::<u32>::default();
        t.add(Table::Data, "/a", 1);
        assert!(t.contains("/a", 1, WatcherType::Data));
        assert!(!t.contains("/a", 2, WatcherType::Data));
        assert!(!t.contains("/a", 1, WatcherType::Children));
        assert!(!t.remove("/a", 2, WatcherType::Data));
        assert!(!t.remove("/a", 1, WatcherType::Children));
        assert!(t.remove("/a", 1, WatcherType::Any));
        assert!(!t.contains("/a", 1, WatcherType::Any));
    }
}
