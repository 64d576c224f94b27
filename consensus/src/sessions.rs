//! The leader's session tracker: when each session expires unless it is
//! heard from. Only the leader decides expiry; other servers report the
//! sessions their clients touched (ZooKeeper's touch tables), and a new
//! leader gives every session a fresh full timeout, so a failover alone
//! never expires a session.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
pub struct SessionTracker {
    /// Session id -> (timeout, deadline), in the caller's milliseconds.
    sessions: HashMap<i64, (i32, i64)>,
    /// Sessions handed out as expired whose closeSession has not committed:
    /// not handed out again.
    expiring: BTreeSet<i64>,
}

impl SessionTracker {
    /// A tracker for a leader taking office at `now`: every session of the
    /// replicated table gets its full timeout from now.
    pub fn taking_office(sessions: impl IntoIterator<Item = (i64, i32)>, now: i64) -> Self {
        SessionTracker {
            sessions: sessions
                .into_iter()
                .map(|(id, timeout)| (id, (timeout, now + i64::from(timeout))))
                .collect(),
            expiring: BTreeSet::new(),
        }
    }

    /// A session was created (its txn was applied by the leader).
    pub fn opened(&mut self, id: i64, timeout: i32, now: i64) {
        self.sessions
            .insert(id, (timeout, now + i64::from(timeout)));
    }

    /// A session was closed or expired (its txn was applied).
    pub fn closed(&mut self, id: i64) {
        self.sessions.remove(&id);
        self.expiring.remove(&id);
    }

    /// A client of this or another server was heard from. A session whose
    /// expiry is decided stays expiring, as ZooKeeper marks it closing.
    pub fn touch(&mut self, id: i64, now: i64) {
        if self.expiring.contains(&id) {
            return;
        }
        if let Some((timeout, deadline)) = self.sessions.get_mut(&id) {
            *deadline = (*deadline).max(now + i64::from(*timeout));
        }
    }

    /// Sessions due at `now`, each handed out once.
    pub fn due(&mut self, now: i64) -> Vec<i64> {
        let mut due: Vec<i64> = self
            .sessions
            .iter()
            .filter(|(id, (_, deadline))| *deadline <= now && !self.expiring.contains(id))
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        self.expiring.extend(due.iter().copied());
        due
    }

    /// When `id` expires unless heard from, if it is tracked.
    pub fn deadline(&self, id: i64) -> Option<i64> {
        self.sessions.get(&id).map(|(_, deadline)| *deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_leader_gives_every_session_its_full_timeout() {
        let mut t = SessionTracker::taking_office([(1, 100), (2, 300)], 1000);
        assert_eq!(t.due(1099), Vec::<i64>::new());
        assert_eq!(t.due(1100), vec![1]);
        assert_eq!(t.due(1200), Vec::<i64>::new(), "handed out once");
        t.touch(2, 1200);
        assert_eq!(t.deadline(2), Some(1500));
        assert_eq!(t.due(1400), Vec::<i64>::new());
        t.closed(1);
        assert_eq!(t.deadline(1), None);
        t.opened(3, 50, 1450);
        assert_eq!(t.due(1500), vec![2, 3]);
    }

    #[test]
    fn a_touch_after_expiry_was_decided_does_not_revive_the_session() {
        let mut t = SessionTracker::taking_office([(7, 10)], 0);
        assert_eq!(t.due(10), vec![7]);
        t.touch(7, 11);
        assert_eq!(t.deadline(7), Some(10));
        assert_eq!(t.due(30), Vec::<i64>::new());
    }
}
