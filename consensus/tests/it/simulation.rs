//! The deterministic simulation of an ensemble (`testkit::cluster`): many
//! seeds of 3 and 5 voting members (and of 3 with an observer, and of 3
//! with two spares that reconfigs add and remove) under
//! network, disk and crash faults, every invariant checked at every
//! simulated millisecond.
//!
//! `ZOOCORE_SIM_SEED=N` replays one seed; a soak:
//! `ZOOCORE_SIM_SEEDS=5000 ZOOCORE_SIM_MILLIS=20000 cargo test --release -p zoocore-consensus --test it simulation`.

use zoocore_testkit::cluster::{run, SimConfig};

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn simulated_ensembles_keep_every_invariant_under_faults() {
    let (first, count) = match env("ZOOCORE_SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (
            env("ZOOCORE_SIM_FIRST_SEED").unwrap_or(1),
            env("ZOOCORE_SIM_SEEDS").unwrap_or(200),
        ),
    };
    let millis = env("ZOOCORE_SIM_MILLIS").map(|m| m as i64);
    let mut totals = zoocore_testkit::cluster::Report::default();
    for seed in first..first + count {
        let mut cfg = SimConfig::new(seed);
        // Every fourth seed runs five members, every fourth another three
        // voters and an observer, and every fourth another three voters
        // and two spares, with reconfigs.
        match seed % 4 {
            0 => cfg.replicas = 5,
            2 => cfg.observers = 1,
            3 => cfg.spares = 2,
            _ => {}
        }
        if let Some(m) = millis {
            cfg.millis = m;
        }
        match run(cfg) {
            Ok(r) => {
                totals.committed_txns += r.committed_txns;
                totals.acked_writes += r.acked_writes;
                totals.syncs += r.syncs;
                totals.reads += r.reads;
                totals.leader_terms += r.leader_terms;
                totals.crashes += r.crashes;
                totals.partitions += r.partitions;
                totals.expiries += r.expiries;
                totals.refused_frames += r.refused_frames;
                totals.snapshots_taken += r.snapshots_taken;
                totals.snapshots_installed += r.snapshots_installed;
                totals.diverged_entries_replaced += r.diverged_entries_replaced;
                totals.reconfigs += r.reconfigs;
            }
            Err(report) => panic!("{report}"),
        }
    }
    eprintln!("{count} seeds from {first}: {totals:?}");
    // The faults and the workload must actually have happened.
    assert!(totals.acked_writes > count as usize * 10, "{totals:?}");
    assert!(totals.leader_terms > count as usize, "{totals:?}");
    if count >= 50 {
        assert!(
            totals.crashes > 0 && totals.partitions > 0 && totals.expiries > 0,
            "{totals:?}"
        );
        assert!(totals.syncs > 0 && totals.refused_frames > 0, "{totals:?}");
        assert!(totals.reconfigs > 0, "{totals:?}");
        assert!(
            totals.snapshots_taken > 0
                && totals.snapshots_installed > 0
                && totals.diverged_entries_replaced > 0,
            "{totals:?}"
        );
    }
}
