//! What a run measures: a latency histogram per class of operation, errors
//! by code, and completions per second of the measured window.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Classes of operations, each with its own histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// getData, exists, getChildren.
    Read,
    /// setData, create, delete, multi.
    Write,
    /// Watch events: from the write that fires them to their arrival.
    Event,
    /// A new session: TCP connect to ConnectResponse.
    Connect,
    /// closeSession of a storm's sessions.
    Close,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Read,
        Class::Write,
        Class::Event,
        Class::Connect,
        Class::Close,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Event => "event",
            Class::Connect => "connect",
            Class::Close => "close",
        }
    }
}

/// Latencies are kept in nanoseconds, 3 significant digits, up to 100 s.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// One thread's (or, merged, one target's) measurements.
pub struct Recorder {
    pub latency: Vec<Histogram<u64>>,
    pub errors: BTreeMap<i32, u64>,
    /// Completions per class in each second of the measured window.
    pub timeline: Vec<[u64; Class::ALL.len()]>,
}

impl Recorder {
    pub fn new(seconds: u64) -> Self {
        Recorder {
            latency: Class::ALL.iter().map(|_| histogram()).collect(),
            errors: BTreeMap::new(),
            timeline: vec![[0; Class::ALL.len()]; seconds as usize],
        }
    }

    /// Records an operation that completed `into` the measured window with this latency.
    pub fn record(&mut self, class: Class, latency: Duration, into: Duration, err: i32) {
        let nanos = (latency.as_nanos() as u64).clamp(1_000, 100_000_000_000);
        // Clamped into the histogram's range, so recording cannot fail.
        let _ = self.latency[class as usize].record(nanos);
        if let Some(second) = self.timeline.get_mut(into.as_secs() as usize) {
            second[class as usize] += 1;
        }
        if err != 0 {
            *self.errors.entry(err).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            // Same bounds on both sides: adding cannot fail.
            let _ = mine.add(theirs);
        }
        for (code, n) in &other.errors {
            *self.errors.entry(*code).or_default() += n;
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
    }

    pub fn histogram(&self, class: Class) -> &Histogram<u64> {
        &self.latency[class as usize]
    }

    pub fn total(&self) -> u64 {
        self.latency.iter().map(Histogram::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_merge_by_class_second_and_error() {
        let mut a = Recorder::new(3);
        let mut b = Recorder::new(3);
        a.record(
            Class::Read,
            Duration::from_micros(50),
            Duration::from_millis(100),
            0,
        );
        b.record(
            Class::Read,
            Duration::from_micros(150),
            Duration::from_millis(2500),
            0,
        );
        b.record(
            Class::Write,
            Duration::from_millis(2),
            Duration::from_millis(2600),
            -101,
        );
        // Past the window: counted in the histogram, not in the timeline.
        b.record(
            Class::Write,
            Duration::from_millis(2),
            Duration::from_secs(3),
            0,
        );
        a.merge(&b);
        assert_eq!(a.histogram(Class::Read).len(), 2);
        assert_eq!(a.histogram(Class::Write).len(), 2);
        assert_eq!(a.total(), 4);
        assert_eq!(a.timeline[0][Class::Read as usize], 1);
        assert_eq!(a.timeline[2], [1, 1, 0, 0, 0]);
        assert_eq!(a.errors.get(&-101), Some(&1));
        let p100 = a.histogram(Class::Read).value_at_quantile(1.0);
        assert!((149_000..=151_000).contains(&p100), "{p100}");
    }
}
