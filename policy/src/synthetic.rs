//! Synthetic bundles for benchmarks.
