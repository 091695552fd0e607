//! Accounts, tokens, the admin-change queue, set-up secrets, browser sessions.

use std::sync::Arc;

use stele_server::auth::scopes::Scopes;
use stele_server::store::credentials::{WebSession, WebSessionLookup};
use stele_server::store::{AdminAction, AdminChange, Role, Store, TokenLookup, User};

fn user(name: &str, role: Role) -> User {
    User {
        name: name.into(),
        teams: vec!["finance".into(), "ops".into()],
        role,
        password_hash: Some(format!("hash-of-{name}")),
    }
}

fn change(action: AdminAction, subject: &str) -> AdminChange {
    AdminChange {
        by: "root".into(),
        action,
        subject: subject.into(),
        detail: serde_json::json!({"teams": ["finance"], "uid": 0}),
        at: 1_700_000_000,
    }
}

pub async fn an_account_works_only_once_its_change_is_recorded(s: Arc<dyn Store>) {
    let c = change(AdminAction::AccountAdd, "alice");
    assert!(s
        .add_user(user("alice", Role::Approver), None, Some(c.clone()))
        .await
        .unwrap());
    // Made, but not working: not found, not listed; its change waits.
    assert_eq!(s.user("alice").await.unwrap(), None);
    assert!(s.account_exists("alice").await.unwrap());
    assert!(s.users().await.unwrap().is_empty());
    let pending = s.pending_admin_changes().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1, c);
    // A taken name changes nothing, not even the queue.
    assert!(!s
        .add_user(
            user("alice", Role::Admin),
            None,
            Some(change(AdminAction::AccountAdd, "alice"))
        )
        .await
        .unwrap());
    assert_eq!(s.pending_admin_changes().await.unwrap().len(), 1);
    s.admin_change_recorded(pending[0].0).await.unwrap();
    assert_eq!(
        s.user("alice").await.unwrap(),
        Some(user("alice", Role::Approver))
    );
    assert!(s.pending_admin_changes().await.unwrap().is_empty());
    // Without a change (the server's own accounts) it works at once; the
    // list is by name.
    assert!(s
        .add_user(user("adam", Role::Member), None, None)
        .await
        .unwrap());
    let names: Vec<String> = s
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["adam", "alice"]);
    assert!(!s.account_exists("nobody").await.unwrap());
}

pub async fn a_token_works_only_once_recorded_and_until_expired_or_revoked(s: Arc<dyn Store>) {
    s.add_user(user("bob", Role::Member), None, None)
        .await
        .unwrap();
    let scopes = Scopes::parse("read,run").unwrap();
    s.add_token(
        "bob",
        "aaaa1111bbbb2222",
        "ci",
        scopes,
        (100, 200),
        Some(change(AdminAction::TokenCreate, "bob")),
    )
    .await
    .unwrap();
    assert_eq!(
        s.token("aaaa1111bbbb2222", 150).await.unwrap(),
        TokenLookup::Unknown
    );
    let listed = s.tokens(Some("bob")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].recorded),
        ("aaaa1111bbbb", false)
    );
    let (id, _) = s.pending_admin_changes().await.unwrap()[0].clone();
    s.admin_change_recorded(id).await.unwrap();
    assert_eq!(
        s.token("aaaa1111bbbb2222", 150).await.unwrap(),
        TokenLookup::Valid(user("bob", Role::Member), scopes)
    );
    assert_eq!(
        s.token("aaaa1111bbbb2222", 200).await.unwrap(),
        TokenLookup::Expired("bob".into())
    );
    assert!(s.revoke_token("aaaa1111bbbb2222", 160).await.unwrap());
    assert!(!s.revoke_token("aaaa1111bbbb2222", 161).await.unwrap());
    assert_eq!(
        s.token("aaaa1111bbbb2222", 170).await.unwrap(),
        TokenLookup::Revoked("bob".into())
    );
    assert_eq!(s.token("nope", 150).await.unwrap(), TokenLookup::Unknown);
    // A second token, listed after the first; everyone's list holds both.
    s.add_token("bob", "cccc", "cli", Scopes::all(), (101, 300), None)
        .await
        .unwrap();
    let all = s.tokens(None).await.unwrap();
    let seen: Vec<(&str, Option<i64>, bool)> = all
        .iter()
        .map(|t| (t.label.as_str(), t.revoked, t.recorded))
        .collect();
    assert_eq!(seen, [("ci", Some(160), true), ("cli", None, true)]);
    assert_eq!(all[0].scopes, "read,run");
    assert!(s.tokens(Some("alice")).await.unwrap().is_empty());
}

pub async fn revoking_by_id_needs_one_live_token_and_queues_the_change(s: Arc<dyn Store>) {
    s.add_user(user("carol", Role::Member), None, None)
        .await
        .unwrap();
    for h in ["abc111", "abc222", "def333"] {
        s.add_token("carol", h, h, Scopes::all(), (1, 10_000), None)
            .await
            .unwrap();
    }
    let revoke = change(AdminAction::TokenRevoke, "");
    // Two live tokens share the id: nothing happens.
    assert_eq!(
        s.revoke_token_by_id("abc", 5, revoke.clone())
            .await
            .unwrap(),
        None
    );
    assert!(s.pending_admin_changes().await.unwrap().is_empty());
    assert_eq!(
        s.revoke_token_by_id("abc2", 5, revoke.clone())
            .await
            .unwrap(),
        Some("carol".into())
    );
    // Now one live token has id "abc"; the revoked one is not matched again.
    assert_eq!(
        s.revoke_token_by_id("abc2", 6, revoke.clone())
            .await
            .unwrap(),
        None
    );
    let pending = s.pending_admin_changes().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].1.action, pending[0].1.subject.as_str()),
        (AdminAction::TokenRevoke, "carol")
    );
    assert_eq!(
        s.token("abc222", 7).await.unwrap(),
        TokenLookup::Revoked("carol".into())
    );
    assert!(matches!(
        s.token("abc111", 7).await.unwrap(),
        TokenLookup::Valid(..)
    ));
}

pub async fn a_setup_secret_works_once_and_not_after_expiry(s: Arc<dyn Store>) {
    let mut dave = user("dave", Role::Member);
    dave.password_hash = None;
    s.add_user(dave, Some(("setup-hash".into(), 1_000)), None)
        .await
        .unwrap();
    let mut erin = user("erin", Role::Member);
    erin.password_hash = None;
    s.add_user(erin, Some(("old-hash".into(), 500)), None)
        .await
        .unwrap();
    assert_eq!(s.complete_setup("wrong", "pw", 10).await.unwrap(), None);
    assert_eq!(s.complete_setup("old-hash", "pw", 500).await.unwrap(), None);
    assert_eq!(
        s.complete_setup("setup-hash", "pw-hash", 999)
            .await
            .unwrap(),
        Some("dave".into())
    );
    assert_eq!(
        s.complete_setup("setup-hash", "again", 999).await.unwrap(),
        None
    );
    let dave = s.user("dave").await.unwrap().unwrap();
    assert_eq!(dave.password_hash.as_deref(), Some("pw-hash"));
    assert!(s.set_password("erin", "new").await.unwrap());
    assert!(!s.set_password("nobody", "new").await.unwrap());
    // Setting a password spends the set-up secret too.
    assert_eq!(s.complete_setup("old-hash", "pw", 1).await.unwrap(), None);
}

pub async fn browser_sessions_live_expire_and_end_at_logout(s: Arc<dyn Store>) {
    let ws = |hash: &str, expires: i64| WebSession {
        hash: hash.into(),
        user: User {
            password_hash: None,
            ..user("frank", Role::Reviewer)
        },
        method: "password".into(),
        csrf_hash: format!("csrf-{hash}"),
        created: 10,
        expires,
    };
    s.add_web_session(ws("w1", 100)).await.unwrap();
    s.add_web_session(ws("w2", 50)).await.unwrap();
    assert_eq!(
        s.web_session("w1", 20).await.unwrap(),
        WebSessionLookup::Live(ws("w1", 100))
    );
    assert_eq!(
        s.web_session("w2", 50).await.unwrap(),
        WebSessionLookup::Expired("frank".into())
    );
    assert!(s.revoke_web_session("w1", 30).await.unwrap());
    assert!(!s.revoke_web_session("w1", 31).await.unwrap());
    assert_eq!(
        s.web_session("w1", 32).await.unwrap(),
        WebSessionLookup::Revoked("frank".into())
    );
    assert_eq!(
        s.web_session("none", 1).await.unwrap(),
        WebSessionLookup::Unknown
    );
}
