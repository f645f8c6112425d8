//! The cache of validated keys and the map of refusals lately audited.
#![allow(clippy::unwrap_used)]

use super::*;

fn known(now: i64) -> Arc<Known> {
    let tenant = TenantId::primary();
    let user = UserRow {
        user_id: "u1".into(),
        tenant_id: tenant.clone(),
        username: "alice".into(),
        username_key: "alice".into(),
        email: None,
        display_name: None,
        enabled: true,
        roles: String::new(),
        password_hash: None,
        password_changed_at: None,
        last_login_at: None,
        totp_secret_enc: None,
        totp_pending_enc: None,
        totp_confirmed_at: None,
        totp_last_step: None,
        created_at: now,
        updated_at: now,
    };
    let key = ApiKeyRow {
        key_id: "k1".into(),
        tenant_id: tenant,
        user_id: "u1".into(),
        verifier: vec![0; 32],
        created_at: now,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    Arc::new(Known {
        key,
        user,
        scopes: Vec::new(),
        read_at: now,
    })
}

/// A validation that read a key before a rotation forgot it must not put it back: the old
/// key would validate for another `TTL_SECS` on the instance that rotated it.
#[test]
fn a_read_from_before_a_forget_is_not_remembered() {
    let cache = ApiKeys::default();
    let key = (TenantId::primary(), "k1".to_owned());
    let before = cache.generation();
    cache.forget(&key);
    cache.insert(key.clone(), known(100), before);
    assert!(cache.get(&key, 100).is_none());
    cache.insert(key.clone(), known(100), cache.generation());
    assert!(cache.get(&key, 100).is_some());
}

/// A full map of refusals lately audited makes room from the windows that ended, and never
/// forgets a live one (which would write a row for every refusal of a burst).
#[test]
fn a_full_map_of_refusals_keeps_the_live_windows() {
    let cache = ApiKeys::default();
    let audit_key = |n: usize| {
        (
            TenantId::primary(),
            "c1".to_owned(),
            RequestEvent::ApiKeyValidate,
            Refusal::WrongSecret,
            format!("key{n}"),
        )
    };
    for n in 0..ApiKeys::CAPACITY {
        assert_eq!(cache.audit_due(audit_key(n), 0), Some(0));
    }
    // Full of live windows: audited, not remembered; the others stay.
    assert_eq!(cache.audit_due(audit_key(usize::MAX), 10), Some(0));
    assert_eq!(cache.audit_due(audit_key(0), 11), None);
    // Once the windows end, there is room again.
    let later = ApiKeys::AUDIT_WINDOW_SECS;
    assert_eq!(cache.audit_due(audit_key(usize::MAX), later), Some(0));
    assert_eq!(cache.audit_due(audit_key(usize::MAX), later + 1), None);
}
