//! Unit tests of the file requests: framing round trips and the caps.

use super::*;
use crate::vm::protocol::{read_frame, write_frame, GuestMsg, HostMsg, MAX_FRAME};

fn round_trip<T>(msg: &T) -> T
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let mut buf = Vec::new();
    write_frame(&mut buf, msg).unwrap();
    read_frame(&mut buf.as_slice()).unwrap().unwrap()
}

fn all_ops() -> Vec<FsOp> {
    vec![
        FsOp::Read {
            path: "a/b.txt".into(),
            offset: 7,
            len: 100,
        },
        FsOp::Write {
            path: "new".into(),
            data: Bytes(vec![0, 1, 255]),
            at: WriteAt::Offset(3),
            create: Create::New,
            mode: 0o640,
        },
        FsOp::Write {
            path: "w".into(),
            data: Bytes(b"x".to_vec()),
            at: WriteAt::Append,
            create: Create::Existing,
            mode: 0o600,
        },
        FsOp::List {
            path: String::new(),
            max_entries: 10,
        },
        FsOp::Stat {
            path: "l".into(),
            links: Links::NoFollow,
        },
        FsOp::Mkdir {
            path: "d/e".into(),
            parents: Parents::Create,
            mode: 0o755,
        },
        FsOp::Remove {
            path: "d".into(),
            what: RemoveWhat::Tree,
        },
        FsOp::Rename {
            from: "a".into(),
            to: "b".into(),
        },
    ]
}

#[test]
fn every_request_round_trips_in_a_frame() {
    for (i, op) in all_ops().into_iter().enumerate() {
        let msg = HostMsg::Fs { id: i as u64, op };
        assert_eq!(round_trip(&msg), msg);
    }
}

#[test]
fn every_answer_round_trips_in_a_frame() {
    let stat = FsStat {
        kind: FsKind::Symlink,
        size: 12,
        mode: 0o777,
        mtime_s: -5,
        mtime_ns: 999,
    };
    let outcomes = [
        FsOutcome::Ok(FsReply::Data(FsData {
            data: Bytes(vec![9; 10]),
            size: 10,
        })),
        FsOutcome::Ok(FsReply::Written(FsWritten { bytes: 3, size: 6 })),
        FsOutcome::Ok(FsReply::Entries(FsListing {
            entries: vec![FsEntry {
                name: "é \"q\"".into(),
                kind: FsKind::Dir,
            }],
            listing: Listing::Truncated,
            non_utf8: 1,
        })),
        FsOutcome::Ok(FsReply::Stat(stat)),
        FsOutcome::Ok(FsReply::Done),
        FsOutcome::Err(FsError {
            kind: FsErrorKind::Escape,
            errno: None,
            message: "a path led outside of the filesystem".into(),
        }),
        FsOutcome::Err(FsError::from_io(&std::io::Error::from_raw_os_error(
            libc::EACCES,
        ))),
    ];
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let msg = GuestMsg::FsDone {
            id: i as u64,
            outcome,
        };
        assert_eq!(round_trip(&msg), msg);
    }
}

#[test]
fn requests_within_the_caps_pass() {
    for op in all_ops() {
        op.check().unwrap();
    }
    let largest = FsOp::Write {
        path: "p".repeat(MAX_FS_PATH),
        data: Bytes(vec![0xff; MAX_FS_WRITE]),
        at: WriteAt::Truncate,
        create: Create::IfMissing,
        mode: MODE_MASK,
    };
    largest.check().unwrap();
    // The largest write still fits in a frame once base64-encoded.
    let msg = HostMsg::Fs { id: 1, op: largest };
    assert_eq!(round_trip(&msg), msg);
}

#[test]
fn requests_beyond_the_caps_are_refused() {
    let kind = |op: FsOp| op.check().unwrap_err().kind;
    assert_eq!(
        kind(FsOp::Read {
            path: "f".into(),
            offset: 0,
            len: MAX_FS_READ + 1,
        }),
        FsErrorKind::TooLarge
    );
    assert_eq!(
        kind(FsOp::Read {
            path: "f".into(),
            offset: 0,
            len: u64::MAX,
        }),
        FsErrorKind::TooLarge
    );
    assert_eq!(
        kind(FsOp::Write {
            path: "f".into(),
            data: Bytes(vec![0; MAX_FS_WRITE + 1]),
            at: WriteAt::Truncate,
            create: Create::IfMissing,
            mode: 0o644,
        }),
        FsErrorKind::TooLarge
    );
    assert_eq!(
        kind(FsOp::List {
            path: String::new(),
            max_entries: MAX_FS_ENTRIES + 1,
        }),
        FsErrorKind::TooLarge
    );
    assert_eq!(
        kind(FsOp::Stat {
            path: "p".repeat(MAX_FS_PATH + 1),
            links: Links::Follow,
        }),
        FsErrorKind::TooLarge
    );
    assert_eq!(
        kind(FsOp::Rename {
            from: "a".into(),
            to: "b\0c".into(),
        }),
        FsErrorKind::InvalidRequest
    );
    assert_eq!(
        kind(FsOp::Mkdir {
            path: "d".into(),
            parents: Parents::No,
            mode: 0o10_0755,
        }),
        FsErrorKind::InvalidRequest
    );
}

#[test]
fn answers_beyond_the_request_are_refused() {
    let read = FsOp::Read {
        path: "f".into(),
        offset: 0,
        len: 4,
    };
    let data = |n: usize| {
        FsReply::Data(FsData {
            data: Bytes(vec![0; n]),
            size: 100,
        })
    };
    read.check_reply(&data(4)).unwrap();
    assert!(read.check_reply(&data(5)).is_err());
    assert!(read.check_reply(&FsReply::Done).is_err());
    let list = FsOp::List {
        path: String::new(),
        max_entries: 1,
    };
    let entries = |names: &[&str]| {
        FsReply::Entries(FsListing {
            entries: names
                .iter()
                .map(|n| FsEntry {
                    name: (*n).into(),
                    kind: FsKind::File,
                })
                .collect(),
            listing: Listing::Complete,
            non_utf8: 0,
        })
    };
    list.check_reply(&entries(&["a"])).unwrap();
    assert!(list.check_reply(&entries(&["a", "b"])).is_err());
    assert!(list.check_reply(&entries(&["../x"])).is_err());
    assert!(list.check_reply(&entries(&[""])).is_err());
    let write = FsOp::Write {
        path: "f".into(),
        data: Bytes(vec![1, 2]),
        at: WriteAt::Truncate,
        create: Create::IfMissing,
        mode: 0o644,
    };
    assert!(write
        .check_reply(&FsReply::Written(FsWritten { bytes: 3, size: 3 }))
        .is_err());
    write
        .check_reply(&FsReply::Written(FsWritten { bytes: 2, size: 2 }))
        .unwrap();
}

#[test]
fn the_largest_listing_fits_in_a_frame() {
    // 255-byte names of control characters, each escaped as six bytes.
    let entries = (0..MAX_FS_ENTRIES)
        .map(|_| FsEntry {
            name: "\u{1}".repeat(255),
            kind: FsKind::Other,
        })
        .collect();
    let msg = GuestMsg::FsDone {
        id: u64::MAX,
        outcome: FsOutcome::Ok(FsReply::Entries(FsListing {
            entries,
            listing: Listing::Truncated,
            non_utf8: u64::MAX,
        })),
    };
    let len = serde_json::to_vec(&msg).unwrap().len();
    assert!(len <= MAX_FRAME, "{len}");
}

#[test]
fn errors_are_typed_and_bounded() {
    let escape = std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "a path led outside of the filesystem",
    );
    assert_eq!(FsError::from_io(&escape).kind, FsErrorKind::Escape);
    let denied = FsError::from_io(&std::io::Error::from_raw_os_error(libc::EACCES));
    assert_eq!(denied.kind, FsErrorKind::PermissionDenied);
    assert_eq!(denied.errno, Some(libc::EACCES));
    for (errno, kind) in [
        (libc::ENOENT, FsErrorKind::NotFound),
        (libc::EEXIST, FsErrorKind::AlreadyExists),
        (libc::ENOTDIR, FsErrorKind::NotADirectory),
        (libc::EISDIR, FsErrorKind::IsADirectory),
        (libc::ENOTEMPTY, FsErrorKind::DirectoryNotEmpty),
        (libc::EIO, FsErrorKind::Io),
    ] {
        let e = FsError::from_io(&std::io::Error::from_raw_os_error(errno));
        assert_eq!(e.kind, kind, "errno {errno}");
    }
    let long = FsError::new(FsErrorKind::Io, "é".repeat(MAX_FS_MESSAGE));
    assert!(long.message.len() <= MAX_FS_MESSAGE);
}
