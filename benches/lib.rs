//! Criterion benchmarks live beside this file; see README.md.
