//! What the server builds from the workers' logs it holds (docs/server.md
//! "Workers: shipping"): inclusion proofs of shipped entries, for session
//! bundles of shipped sessions (docs/export-format.md §8).

pub mod bodies;
pub mod late_entries;
pub mod proofs;
pub mod session_bundle;
