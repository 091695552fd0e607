//! Bundles handed out to continue a session are kept by their digest,
//! byte for byte, with where the session continued from; keeping one again
//! changes nothing, and an unknown digest finds nothing.

use std::sync::Arc;

use stele_server::store::Store;

pub async fn a_bundle_is_kept_once_under_its_digest(s: Arc<dyn Store>) {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let w1 = "w1.test.invalid/log";
    assert_eq!(s.continued_from("s1", w1).await.unwrap(), None);
    s.keep_bundle("sha256:aa", "s1", w1, 40, &bytes, 10)
        .await
        .unwrap();
    // The same digest again (another server, the same bundle): the first stays.
    s.keep_bundle("sha256:aa", "s1", w1, 99, b"other", 11)
        .await
        .unwrap();
    assert_eq!(s.kept_bundle("sha256:aa").await.unwrap(), Some(bytes));
    assert_eq!(s.kept_bundle("sha256:bb").await.unwrap(), None);
    // Where it continued from that log; not from another, nor another session.
    assert_eq!(s.continued_from("s1", w1).await.unwrap(), Some(40));
    assert_eq!(
        s.continued_from("s1", "w2.test.invalid/log").await.unwrap(),
        None
    );
    assert_eq!(s.continued_from("s2", w1).await.unwrap(), None);
}
