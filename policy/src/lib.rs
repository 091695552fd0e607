//! stele's policy engine (Cedar): decisions with reasons.
