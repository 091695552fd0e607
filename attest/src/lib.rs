//! Signing identities, C2SP signed notes and checkpoints.
