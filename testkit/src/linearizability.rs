//! A linearizability checker for histories of operations on ZooKeeper
//! znodes used as registers (the Wing-Gong search with Lowe's memoisation,
//! as Porcupine and Knossos do it): is there an order of the operations,
//! each taking effect at one instant between its call and its return,
//! that a single register would have answered exactly as the servers did?
//!
//! Linearizability composes per object, so each key is checked alone. An
//! operation whose outcome is unknown (the connection was lost before the
//! reply) has no return: it may take effect at any instant after its call,
//! or never, which is the same as last.

use std::collections::HashSet;
use std::time::Instant;

/// A register's state: the znode's data version and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Register {
    pub version: i32,
    pub value: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `setData(value, expected)`; `expected` -1 writes whatever the version.
    Set { value: u64, expected: i32 },
    /// `sync` then `getData` on the same server.
    Read,
}

/// What the server answered; `Unknown` when the connection was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A set succeeded, giving this version.
    Set {
        version: i32,
    },
    /// A conditional set found another version.
    BadVersion,
    Read(Register),
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub client: usize,
    pub op: Op,
    pub call: Instant,
    /// `None` with `Outcome::Unknown`.
    pub ret: Option<Instant>,
    pub outcome: Outcome,
}

/// What the register answers to `op` in `state`, and the state after; `None`
/// if it could not have answered `outcome`.
fn step(state: Register, op: Op, outcome: Outcome) -> Option<Register> {
    let applied = match op {
        Op::Set { value, expected } if expected < 0 || expected == state.version => {
            let next = Register {
                version: state.version + 1,
                value,
            };
            (
                next,
                Outcome::Set {
                    version: next.version,
                },
            )
        }
        Op::Set { .. } => (state, Outcome::BadVersion),
        Op::Read => (state, Outcome::Read(state)),
    };
    match outcome {
        Outcome::Unknown => Some(applied.0),
        answered if answered == applied.1 => Some(applied.0),
        _ => None,
    }
}

/// One event of the history, in a doubly linked list.
#[derive(Clone, Copy)]
struct Node {
    op: usize,
    is_call: bool,
    /// A call's return node.
    partner: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

/// Whether `history` (one register's operations, from `initial`) is
/// linearizable; `Err` says which operations could not be ordered.
pub fn check(initial: Register, history: &[Operation]) -> Result<(), String> {
    let n = history.len();
    if n == 0 {
        return Ok(());
    }
    // Events in time order; at equal times calls first (the operations then
    // overlap, the permissive reading). A lost reply returns after all.
    let mut events: Vec<(Instant, bool, usize)> = Vec::with_capacity(2 * n);
    let end = history
        .iter()
        .flat_map(|o| [Some(o.call), o.ret])
        .flatten()
        .max()
        .unwrap_or_else(Instant::now)
        + std::time::Duration::from_secs(1);
    for (i, o) in history.iter().enumerate() {
        events.push((o.call, true, i));
        events.push((o.ret.unwrap_or(end), false, i));
    }
    events.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    let mut nodes: Vec<Node> = Vec::with_capacity(2 * n + 1);
    let mut call_node = vec![NIL; n];
    for (k, &(_, is_call, op)) in events.iter().enumerate() {
        nodes.push(Node {
            op,
            is_call,
            partner: NIL,
            prev: if k == 0 { NIL } else { k - 1 },
            next: if k + 1 == events.len() { NIL } else { k + 1 },
        });
        if is_call {
            call_node[op] = k;
        } else {
            nodes[call_node[op]].partner = k;
        }
    }
    let mut head = 0;
    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Register)> = HashSet::new();
    let mut stack: Vec<(usize, Register)> = Vec::new();
    let mut state = initial;
    let mut entry = head;
    let mut deepest = 0;
    while head != NIL {
        if entry == NIL {
            return Err("search ran off the list".into());
        }
        let node = nodes[entry];
        if node.is_call {
            let o = &history[node.op];
            if let Some(next) = step(state, o.op, o.outcome) {
                linearized[node.op / 64] |= 1 << (node.op % 64);
                if seen.insert((linearized.clone(), next)) {
                    stack.push((entry, state));
                    deepest = deepest.max(stack.len());
                    state = next;
                    lift(&mut nodes, &mut head, entry);
                    entry = head;
                    continue;
                }
                linearized[node.op / 64] &= !(1 << (node.op % 64));
            }
            entry = node.next;
        } else {
            // An operation returned before any order could place it.
            let Some((call, before)) = stack.pop() else {
                return Err(describe(history, &nodes, head));
            };
            state = before;
            let op = nodes[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut nodes, &mut head, call);
            entry = nodes[call].next;
        }
    }
    Ok(())
}

fn lift(nodes: &mut [Node], head: &mut usize, call: usize) {
    let ret = nodes[call].partner;
    for k in [call, ret] {
        let Node { prev, next, .. } = nodes[k];
        if prev == NIL {
            *head = next;
        } else {
            nodes[prev].next = next;
        }
        if next != NIL {
            nodes[next].prev = prev;
        }
    }
}

fn unlift(nodes: &mut [Node], head: &mut usize, call: usize) {
    let ret = nodes[call].partner;
    for k in [ret, call] {
        let Node { prev, next, .. } = nodes[k];
        if prev == NIL {
            *head = k;
        } else {
            nodes[prev].next = k;
        }
        if next != NIL {
            nodes[next].prev = k;
        }
    }
}

fn describe(history: &[Operation], nodes: &[Node], head: usize) -> String {
    let mut out = String::from("not linearizable; operations still to place, in time order:\n");
    let t0 = history.iter().map(|o| o.call).min();
    let mut k = head;
    let mut shown = 0;
    while k != NIL && shown < 20 {
        let node = nodes[k];
        if node.is_call {
            let o = &history[node.op];
            let at = |t: Instant| t0.map_or(0, |t0| t.duration_since(t0).as_micros());
            out.push_str(&format!(
                "  client {} {:?} -> {:?} [{} us, {}]\n",
                o.client,
                o.op,
                o.outcome,
                at(o.call),
                o.ret.map_or("lost".into(), |r| format!("{} us", at(r)))
            ));
            shown += 1;
        }
        k = node.next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn op(base: Instant, client: usize, op: Op, span: (u64, u64), outcome: Outcome) -> Operation {
        Operation {
            client,
            op,
            call: at(base, span.0),
            ret: (outcome != Outcome::Unknown).then(|| at(base, span.1)),
            outcome,
        }
    }

    const ZERO: Register = Register {
        version: 0,
        value: 0,
    };

    fn read(version: i32, value: u64) -> Outcome {
        Outcome::Read(Register { version, value })
    }

    #[test]
    fn overlapping_operations_may_take_either_order() {
        let b = Instant::now();
        let set = Op::Set {
            value: 7,
            expected: 0,
        };
        let history = vec![
            op(b, 0, set, (0, 10), Outcome::Set { version: 1 }),
            op(b, 1, Op::Read, (1, 9), read(0, 0)),
            op(b, 2, Op::Read, (2, 11), read(1, 7)),
            op(b, 1, Op::Read, (12, 13), read(1, 7)),
        ];
        check(ZERO, &history).expect("linearizable");
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        let b = Instant::now();
        let history = vec![
            op(
                b,
                0,
                Op::Set {
                    value: 7,
                    expected: -1,
                },
                (0, 10),
                Outcome::Set { version: 1 },
            ),
            op(b, 1, Op::Read, (11, 12), read(0, 0)),
        ];
        let err = check(ZERO, &history).expect_err("stale read");
        assert!(err.contains("not linearizable"), "{err}");
    }

    #[test]
    fn two_conditional_sets_cannot_both_win_one_version() {
        let b = Instant::now();
        let cas = |value| Op::Set { value, expected: 0 };
        let both = vec![
            op(b, 0, cas(1), (0, 10), Outcome::Set { version: 1 }),
            op(b, 1, cas(2), (0, 10), Outcome::Set { version: 1 }),
        ];
        assert!(check(ZERO, &both).is_err());
        let one = vec![
            op(b, 0, cas(1), (0, 10), Outcome::Set { version: 1 }),
            op(b, 1, cas(2), (0, 10), Outcome::BadVersion),
        ];
        check(ZERO, &one).expect("one wins");
    }

    #[test]
    fn a_lost_write_may_take_effect_late_or_never() {
        let b = Instant::now();
        let lost = Op::Set {
            value: 9,
            expected: -1,
        };
        let seen_late = vec![
            op(b, 0, lost, (0, 0), Outcome::Unknown),
            op(b, 1, Op::Read, (5, 6), read(0, 0)),
            op(b, 1, Op::Read, (50, 60), read(1, 9)),
        ];
        check(ZERO, &seen_late).expect("took effect between the reads");
        let never = vec![
            op(b, 0, lost, (0, 0), Outcome::Unknown),
            op(b, 1, Op::Read, (50, 60), read(0, 0)),
        ];
        check(ZERO, &never).expect("never took effect");
        let before_call = vec![
            op(b, 1, Op::Read, (0, 5), read(1, 9)),
            op(b, 0, lost, (10, 10), Outcome::Unknown),
        ];
        assert!(
            check(ZERO, &before_call).is_err(),
            "seen before it was sent"
        );
    }
}
