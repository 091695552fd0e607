//! Having the kernel drop entries, so it forgets their inodes and the
//! layer's descriptors for them close (`budget.rs` says when).
//!
//! The evictor is a thread of its own: a request thread must not block on
//! the kernel, which may wait for that very thread's reply.
//!
//! Two ways to ask, the first the kernel supports:
//! * `FUSE_NOTIFY_PRUNE` (protocol 7.45, Linux 6.18): "drop the unused
//!   entries of these inodes", a batch at a time, with no directory lock;
//! * `FUSE_NOTIFY_INVAL_ENTRY`, one entry at a time. The kernel takes the
//!   lock of the entry's directory for it — a lock it already holds
//!   (shared) while a LOOKUP in that directory waits for our reply, and
//!   exclusively for a CREATE, MKDIR, MKNOD, SYMLINK or LINK. If that
//!   request waits for room the evictor is to make, neither moves: the
//!   request until its deadline, then refused although room was on the
//!   way. A walk through one large directory hits this every time.
//!
//!   So the evictor says which directory it is asking about, and since
//!   when; a request in that directory that finds the evictor stuck there
//!   for [`STUCK_AFTER`] may go past the budget's maximum, by as many
//!   descriptors as the budget may borrow from the reserve for entries on
//!   their way out (`Budget::has_room_past_stuck`): the reserve holds at
//!   least twice that, and the evictor frees them once it has the lock.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::layer::MediatedLayer;

/// `FUSE_NOTIFY_INVAL_ENTRY` (include/uapi/linux/fuse.h).
const FUSE_NOTIFY_INVAL_ENTRY: i32 = 3;

/// `FUSE_NOTIFY_PRUNE` (include/uapi/linux/fuse.h, protocol 7.45).
const FUSE_NOTIFY_PRUNE: i32 = 9;

/// Inodes per prune message, and entries asked to be dropped one by one
/// between two reports of progress to requests waiting for room.
const EVICTION_BATCH: usize = 32;

/// An ask the kernel has not answered after this long waits for a lock
/// (it takes microseconds otherwise).
pub(super) const STUCK_AFTER: Duration = Duration::from_millis(20);

/// The evictor's ask in flight, if any.
#[derive(Debug, Default)]
pub(crate) struct InvalInFlight {
    ask: Mutex<Option<Ask>>,
}

#[derive(Debug)]
struct Ask {
    dir: u64,
    since: Instant,
}

/// An ask in flight, from [`InvalInFlight::asking`] until dropped.
#[derive(Debug)]
pub(crate) struct Asking<'a>(&'a InvalInFlight);

impl InvalInFlight {
    /// The evictor is about to ask the kernel to drop an entry of
    /// directory `dir` (until the guard is dropped).
    pub fn asking(&self, dir: u64) -> Asking<'_> {
        *self.ask.lock().unwrap_or_else(PoisonError::into_inner) = Some(Ask {
            dir,
            since: Instant::now(),
        });
        Asking(self)
    }

    /// Whether the evictor has waited for directory `dir`'s lock for
    /// [`STUCK_AFTER`]: a request the kernel holds that lock for may then
    /// go past the budget's maximum (`Budget::has_room_past_stuck`).
    pub fn stuck_in(&self, dir: u64) -> bool {
        match self
            .ask
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            Some(a) => a.dir == dir && a.since.elapsed() >= STUCK_AFTER,
            None => false,
        }
    }
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        *self.0.ask.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// How the kernel is asked to drop entries.
#[derive(Debug, Clone, Copy)]
enum Dropping {
    /// By inode, in batches (`FUSE_NOTIFY_PRUNE`).
    Prune,
    /// By name, one at a time (`FUSE_NOTIFY_INVAL_ENTRY`): kernels before
    /// protocol 7.45.
    InvalEntry,
}

/// Until the server stops: whenever the layer holds more than its
/// high-water mark of inodes, ask the kernel to drop the least recently
/// used entries, whose inodes it then forgets (and their descriptors close).
pub(super) fn evict_loop(layer: &MediatedLayer, fuse: RawFd) {
    layer.set_evictor(true);
    let mut how = Dropping::Prune;
    while layer.wait_for_eviction() {
        let victims = layer.eviction_victims();
        let rest = match how {
            Dropping::Prune => match prune(layer, fuse, &victims) {
                Ok(()) => continue,
                Err(from) => {
                    how = Dropping::InvalEntry;
                    victims.get(from..).unwrap_or_default()
                }
            },
            Dropping::InvalEntry => &victims[..],
        };
        inval_entries(layer, fuse, rest);
    }
    layer.set_evictor(false);
}

/// Prune `victims` in batches; `Err(i)`: the kernel does not know the
/// message, and `victims[i..]` were not asked for.
fn prune(layer: &MediatedLayer, fuse: RawFd, victims: &[(u64, u64, String)]) -> Result<(), usize> {
    for (n, batch) in victims.chunks(EVICTION_BATCH).enumerate() {
        let inodes: Vec<u64> = batch.iter().map(|(inode, _, _)| *inode).collect();
        match notify_prune(fuse, &inodes) {
            Ok(()) => layer.evicted(&inodes),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(n * EVICTION_BATCH);
            }
            // The connection is going away: nothing more to drop.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Ask for `victims` one entry at a time.
fn inval_entries(layer: &MediatedLayer, fuse: RawFd, victims: &[(u64, u64, String)]) {
    let mut asked = Vec::new();
    for (inode, parent, name) in victims {
        // A request in `parent` may go ahead if this waits for the lock
        // the kernel holds for it (above).
        let asking = layer.asking_to_drop_in(*parent);
        // ENOENT: the kernel no longer has the entry; nothing to do.
        let asked_ok = notify_inval_entry(fuse, *parent, name).is_ok();
        drop(asking);
        if asked_ok {
            asked.push(*inode);
        }
        // Progress as it goes: a request waiting for room may proceed
        // (and release the directory lock a later notification of this
        // round may wait for).
        if asked.len() >= EVICTION_BATCH {
            layer.evicted(&asked);
            asked.clear();
        }
    }
    layer.evicted(&asked);
}

/// Ask the kernel to drop the unused entries of `inodes`
/// (`FUSE_NOTIFY_PRUNE`); EINVAL where the kernel predates it.
fn notify_prune(fuse: RawFd, inodes: &[u64]) -> io::Result<()> {
    let count =
        u32::try_from(inodes.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // fuse_out_header { len: u32, error: i32, unique: u64 } and
    // fuse_notify_prune_out { count: u32, padding: u32, spare: u64 },
    // then the node ids.
    let len = 16 + 16 + 8 * inodes.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&FUSE_NOTIFY_PRUNE.to_ne_bytes());
    msg.extend_from_slice(&0u64.to_ne_bytes());
    msg.extend_from_slice(&count.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&0u64.to_ne_bytes());
    for inode in inodes {
        msg.extend_from_slice(&inode.to_ne_bytes());
    }
    write_notification(fuse, &msg)
}

/// Ask the kernel to drop its entry `name` in directory `parent`
/// (`FUSE_NOTIFY_INVAL_ENTRY`); the inode is forgotten once unused.
/// Blocks while the kernel holds `parent`'s lock.
fn notify_inval_entry(fuse: RawFd, parent: u64, name: &str) -> io::Result<()> {
    let name = name.as_bytes();
    let namelen =
        u32::try_from(name.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // fuse_out_header, then fuse_notify_inval_entry_out { parent: u64,
    // namelen: u32, flags: u32 }, then the name and its NUL.
    let len = 16 + 16 + name.len() + 1;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&FUSE_NOTIFY_INVAL_ENTRY.to_ne_bytes());
    msg.extend_from_slice(&0u64.to_ne_bytes());
    msg.extend_from_slice(&parent.to_ne_bytes());
    msg.extend_from_slice(&namelen.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(name);
    msg.push(0);
    write_notification(fuse, &msg)
}

/// One notification, whole, to the device.
fn write_notification(fuse: RawFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: writes `msg.len()` bytes from a live buffer to the device.
    let n = unsafe { libc::write(fuse, msg.as_ptr().cast(), msg.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_a_request_in_the_directory_of_a_stuck_ask_may_go_ahead() {
        let inval = InvalInFlight::default();
        // Nothing asked: nobody goes ahead.
        assert!(!inval.stuck_in(7));
        let asking = inval.asking(7);
        // Not stuck yet: the ask may be about to finish.
        assert!(!inval.stuck_in(7));
        std::thread::sleep(STUCK_AFTER + Duration::from_millis(5));
        assert!(inval.stuck_in(7));
        // Another directory's request does not hold the lock asked for.
        assert!(!inval.stuck_in(8));
        drop(asking);
        assert!(!inval.stuck_in(7));
        // A new ask starts its own clock.
        let _again = inval.asking(7);
        assert!(!inval.stuck_in(7));
    }
}
