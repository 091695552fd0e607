//! Bundles handed out to continue a session are kept by their digest,
//! byte for byte; keeping one again changes nothing, and an unknown digest
//! finds nothing.

use std::sync::Arc;

use stele_server::store::Store;

pub async fn a_bundle_is_kept_once_under_its_digest(s: Arc<dyn Store>) {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    s.keep_bundle("sha256:aa", "s1", "w1.test.invalid/log", &bytes, 10)
        .await
        .unwrap();
    // The same digest again (another server, the same bundle): the first stays.
    s.keep_bundle("sha256:aa", "s1", "w1.test.invalid/log", b"other", 11)
        .await
        .unwrap();
    assert_eq!(s.kept_bundle("sha256:aa").await.unwrap(), Some(bytes));
    assert_eq!(s.kept_bundle("sha256:bb").await.unwrap(), None);
}
