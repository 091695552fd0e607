//! The workspace over virtio-fs: an in-process vhost-user-fs backend that
//! feeds the guest's FUSE requests, taken from the virtqueues, to the same
//! [`MediatedLayer`] the process backend serves over /dev/fuse. Every file
//! access in the guest is therefore decided by the Mediator and logged on
//! the host; there is no other path from the guest to host files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::JoinHandle;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{Reader, VirtioFsWriter};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::QueueOwnedT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::error::VmError;
use crate::fs::MediatedLayer;

/// hiprio + one request queue (QEMU's default `num-request-queues=1`).
const NUM_QUEUES: usize = 2;
/// Largest virtqueue accepted.
const QUEUE_SIZE: usize = 1024;

type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

/// Offset of `pid` in `fuse_in_header` (len, opcode, unique, nodeid, uid, gid, pid).
const IN_HEADER_PID: u64 = 32;

/// Zero the requester pid in the request header before the layer sees it.
///
/// The pid in a virtio-fs request is a *guest* pid, while the mediated
/// layer resolves requester pids through the host's /proc (right for the
/// process backend, whose sandbox shares the host kernel): left as is, the
/// log would attribute guest accesses to whatever host process has that
/// number. With 0 the layer records no pid. The guest kernel does not read
/// the header back, so rewriting this field is invisible to it.
fn forget_guest_pid<M>(mem: &GuestMemoryMmap, chain: &virtio_queue::DescriptorChain<M>)
where
    M: std::ops::Deref<Target = GuestMemoryMmap> + Clone,
{
    use vm_memory::{Address, Bytes};
    let Some(desc) = chain.clone().readable().next() else {
        return;
    };
    if u64::from(desc.len()) >= IN_HEADER_PID + 4 {
        if let Some(at) = desc.addr().checked_add(IN_HEADER_PID) {
            let _ = mem.write_obj(0u32, at);
        }
    }
}

/// The vhost-user backend.
struct FsBackend {
    server: Server<Arc<MediatedLayer>>,
    mem: RwLock<Option<Mem>>,
    event_idx: AtomicBool,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl FsBackend {
    fn process(&self, vring: &VringRwLock, mem: &Mem) -> std::io::Result<()> {
        let guard = mem.memory();
        let chains: Vec<_> = vring
            .get_mut()
            .get_queue_mut()
            .iter(guard.clone())
            .map_err(io_err)?
            .collect();
        let event_idx = self.event_idx.load(Ordering::Relaxed);
        for chain in chains {
            let head = chain.head_index();
            forget_guest_pid(&guard, &chain);
            let reader = Reader::from_descriptor_chain(&*guard, chain.clone()).map_err(io_err)?;
            let writer = VirtioFsWriter::new(&*guard, chain).map_err(io_err)?;
            // A request the layer refuses has already been answered with an
            // errno inside the reply; an Err here means the chain itself was
            // malformed, which is still answered (with nothing written).
            let used = self
                .server
                .handle_message(reader, writer.into(), None, None)
                .unwrap_or(0);
            vring
                .add_used(head, u32::try_from(used).unwrap_or(0))
                .map_err(io_err)?;
            let notify = !event_idx || vring.needs_notification().map_err(io_err)?;
            if notify {
                vring.signal_used_queue()?;
            }
        }
        Ok(())
    }
}

impl VhostUserBackend for FsBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn update_memory(&self, mem: Mem) -> std::io::Result<()> {
        *self.mem.write().unwrap_or_else(PoisonError::into_inner) = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> std::io::Result<()> {
        if evset != EventSet::IN {
            return Err(io_err("unexpected epoll event"));
        }
        let vring = vrings
            .get(usize::from(device_event))
            .ok_or_else(|| io_err("event for an unknown queue"))?;
        let mem = self
            .mem
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| io_err("no guest memory yet"))?;
        if self.event_idx.load(Ordering::Relaxed) {
            // Drain, re-enable notifications, drain what raced in meanwhile.
            loop {
                vring.disable_notification().map_err(io_err)?;
                self.process(vring, &mem)?;
                if !vring.enable_notification().map_err(io_err)? {
                    break;
                }
            }
            Ok(())
        } else {
            self.process(vring, &mem)
        }
    }
}

/// A running vhost-user-fs backend on a unix socket (one VM connection).
pub(crate) struct VirtioFsServer {
    socket: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for VirtioFsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioFsServer")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl VirtioFsServer {
    /// Listen on `socket` and serve `layer` to the VM that connects.
    /// Returns once the socket exists, so QEMU can be started.
    pub fn start(socket: &Path, layer: Arc<MediatedLayer>) -> Result<VirtioFsServer, VmError> {
        let backend = Arc::new(FsBackend {
            server: Server::new(layer),
            mem: RwLock::new(None),
            event_idx: AtomicBool::new(false),
        });
        let mut daemon = VhostUserDaemon::new(
            "stele-virtiofs".to_owned(),
            backend,
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        )
        .map_err(|e| VmError::VirtioFs(e.to_string()))?;
        let mut listener = vhost::vhost_user::Listener::new(socket, true)
            .map_err(|e| VmError::VirtioFs(format!("listen on {}: {e}", socket.display())))?;
        let thread = std::thread::Builder::new()
            .name("stele-virtiofs".into())
            .spawn(move || {
                // Ends when QEMU disconnects (the VM stopped).
                if daemon.start(&mut listener).is_ok() {
                    let _ = daemon.wait();
                }
                for h in daemon.get_epoll_handlers() {
                    h.send_exit_event();
                }
            })
            .map_err(|e| VmError::VirtioFs(e.to_string()))?;
        Ok(VirtioFsServer {
            socket: socket.to_owned(),
            thread: Some(thread),
        })
    }

    /// Wait up to `timeout` for the backend to finish (after QEMU is gone).
    /// A backend QEMU never connected to stays blocked in `accept`; its
    /// thread is left behind rather than blocking the caller.
    pub fn join(mut self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
