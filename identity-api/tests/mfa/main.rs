//! The second factor, with codes from an independent TOTP implementation (totp-rs) reading the
//! `otpauth://` URI the enrolment shows: enrolment and confirmation, `mfa_required` naming what
//! to send, a code accepted once (also by concurrent logins), recovery codes spent once (no
//! double spend under concurrency), re-enrolment only with a current code, every error, and
//! the audit rows. On SQLite and PostgreSQL. [`pending`]: a re-enrolment not confirmed yet
//! leaves the confirmed factor in place.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../login_common/mod.rs"]
mod login_common;
mod pending;

use std::sync::Arc;

use common::Backend;
use common::oauth::enc;
use login_common::{Login, PASSWORD, assert_err, assert_ok, setup};
use serde_json::{Value, json};

pub(crate) const ENROLL: &str = "/credentials/mfa/enroll";
pub(crate) const CONFIRM: &str = "/credentials/mfa/confirm";

/// The code an authenticator app that scanned `uri` shows at `unix`.
pub(crate) fn code(uri: &str, unix: i64) -> String {
    totp_rs::Totp::from_url(uri)
        .unwrap()
        .generate(u64::try_from(unix).unwrap())
        .to_string()
}

/// Enrols and confirms alice: her otpauth URI and recovery codes.
pub(crate) async fn enrolled(t: &Login) -> (String, Vec<String>) {
    let answer = t
        .json(
            ENROLL,
            "10.9.0.1",
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    let body = assert_ok(&answer).clone();
    let uri = body["otpauth_uri"].as_str().unwrap().to_owned();
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let answer = t
        .json(
            CONFIRM,
            "10.9.0.1",
            &json!({"username": "alice", "password": PASSWORD, "otp": code(&uri, t.now())}),
        )
        .await;
    assert_eq!(assert_ok(&answer)["mfa"], "confirmed");
    (uri, codes)
}

pub(crate) async fn login_with(t: &Login, ip: &str, extra: &str) -> common::oauth::Answer {
    t.oauth(
        ip,
        &format!(
            "grant_type=password&username=alice&password={}{extra}",
            enc(PASSWORD)
        ),
    )
    .await
}

async fn enrolment_confirmation_and_login(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let answer = t
        .json(
            ENROLL,
            "10.9.1.1",
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    let body = assert_ok(&answer).clone();
    assert_eq!(answer.1["cache-control"], "no-store");
    let uri = body["otpauth_uri"].as_str().unwrap().to_owned();
    assert!(
        uri.starts_with("otpauth://totp/primary:alice?secret="),
        "{uri}"
    );
    assert_eq!(body["recovery_codes"].as_array().unwrap().len(), 10);
    // Not confirmed yet: no code asked.
    assert_ok(&login_with(&t, "10.9.1.1", "").await);
    // A wrong first code is a failed login.
    let answer = t
        .json(
            CONFIRM,
            "10.9.1.1",
            &json!({"username": "alice", "password": PASSWORD, "otp": "000000x"}),
        )
        .await;
    assert_err(&answer, 400, "invalid_grant", "invalid one-time code");
    assert_eq!(t.failures("alice").await, 1);
    let first = code(&uri, t.now());
    let answer = t
        .json(
            CONFIRM,
            "10.9.1.1",
            &json!({"username": "alice", "password": PASSWORD, "otp": first}),
        )
        .await;
    assert_ok(&answer);
    // Now a login needs the code, and says so.
    let answer = login_with(&t, "10.9.1.1", "").await;
    assert_err(&answer, 403, "mfa_required", "otp");
    assert!(
        answer.2["error_description"]
            .as_str()
            .unwrap()
            .contains("recovery_code")
    );
    let answer = t
        .sealed(
            "10.9.1.1",
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_err(&answer, 403, "mfa_required", "otp");
    // The confirmation's code is spent; the next step's code works once.
    let answer = login_with(&t, "10.9.1.1", &format!("&otp={first}")).await;
    assert_err(&answer, 400, "invalid_grant", "invalid one-time code");
    t.advance(30);
    let next = code(&uri, t.now());
    let answer = t
        .sealed(
            "10.9.1.2",
            &json!({"username": "alice", "password": PASSWORD, "otp": next}),
        )
        .await;
    let c = common::oauth::claims(assert_ok(&answer)["access_token"].as_str().unwrap());
    assert_eq!(c.sub, t.alice.user_id);
    let answer = login_with(&t, "10.9.1.3", &format!("&otp={next}")).await;
    assert_err(&answer, 400, "invalid_grant", "invalid one-time code");
    // A wrong password with a right code is still the password's error.
    t.advance(30);
    let answer = t
        .oauth(
            "10.9.1.4",
            &format!(
                "grant_type=password&username=alice&password=wrong&otp={}",
                code(&uri, t.now())
            ),
        )
        .await;
    assert_err(
        &answer,
        400,
        "invalid_grant",
        "invalid username or password",
    );
    let rows = common::audit_rows(t.env.state.db()).await;
    for (event, outcome) in [
        ("mfa_enroll", "success"),
        ("mfa_confirm", "invalid_otp"),
        ("mfa_confirm", "success"),
        ("login", "mfa_required"),
        ("login", "invalid_otp"),
    ] {
        assert!(
            rows.iter()
                .any(|r| r.event == event && r.outcome == outcome),
            "{event} {outcome}"
        );
    }
    assert!(
        rows.iter()
            .all(|r| !r.detail.as_deref().unwrap_or("").contains(&first))
    );
}

async fn recovery_codes_work_once(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let (_, codes) = enrolled(&t).await;
    // As typed: other case, spaces.
    let typed = codes[0].to_uppercase().replace('-', " ");
    let answer = login_with(&t, "10.9.2.1", &format!("&recovery_code={}", enc(&typed))).await;
    assert_ok(&answer);
    let answer = login_with(&t, "10.9.2.1", &format!("&recovery_code={}", codes[0])).await;
    assert_err(
        &answer,
        400,
        "invalid_grant",
        "invalid one-time code or recovery code",
    );
    let answer = login_with(&t, "10.9.2.2", "&recovery_code=not-a-code").await;
    assert_err(&answer, 400, "invalid_grant", "recovery code");
    let answer = login_with(
        &t,
        "10.9.2.3",
        &format!("&recovery_code={}&otp=123456", codes[1]),
    )
    .await;
    assert_err(&answer, 400, "invalid_request", "not both");
    let rows = common::audit_rows(t.env.state.db()).await;
    let used: Vec<_> = rows
        .iter()
        .filter(|r| r.event == "mfa_recovery_code_use")
        .collect();
    assert_eq!(used.len(), 1);
    assert!(
        used[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("\"recovery_codes_left\":9")
    );
    assert!(
        rows.iter()
            .all(|r| !r.detail.as_deref().unwrap_or("").contains(&codes[0]))
    );
}

/// A grant refused for what the user may not have (a scope its roles lack) is refused before
/// the second factor: the code it brought is not spent.
async fn a_refused_grant_spends_no_code(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let (uri, codes) = enrolled(&t).await;
    let db = t.env.state.db();
    let reader_only = identity_api::storage::UserChange {
        roles: Some("reader"),
        ..Default::default()
    };
    db.update_user(
        common::primary(),
        &t.alice.user_id,
        reader_only,
        t.now(),
        |_| {
            identity_api::storage::AuditRow::user_admin(
                0,
                identity_api::storage::AdminEvent::UserUpdate,
                "test",
                common::primary(),
                &t.alice.user_id,
                json!({}),
            )
        },
    )
    .await
    .unwrap();
    t.advance(30);
    let otp = format!("&otp={}", code(&uri, t.now()));
    let recovery = format!("&recovery_code={}", codes[0]);
    for factor in [&otp, &recovery] {
        let answer = login_with(&t, "10.9.3.1", &format!("&scope=orders.write{factor}")).await;
        assert_err(&answer, 400, "invalid_scope", "");
        assert_ok(&login_with(&t, "10.9.3.1", factor).await);
    }
}

/// Concurrent logins with one recovery code, or with one TOTP code: exactly one wins.
async fn no_double_spend(b: Backend) {
    let Some(t) = setup(b, |s| s.logins.max_failures = 1000).await else {
        return;
    };
    let (uri, codes) = enrolled(&t).await;
    let t = Arc::new(t);
    let race = |extra: String| {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (t, extra) = (Arc::clone(&t), extra.clone());
                tokio::spawn(async move { login_with(&t, &format!("10.9.3.{i}"), &extra).await.0 })
            })
            .collect();
        async move {
            let mut ok = 0;
            for task in tasks {
                let status = task.await.unwrap();
                assert!(status == 200 || status == 400, "{status}");
                ok += usize::from(status == 200);
            }
            ok
        }
    };
    assert_eq!(race(format!("&recovery_code={}", codes[3])).await, 1);
    t.advance(30);
    assert_eq!(race(format!("&otp={}", code(&uri, t.now()))).await, 1);
}

/// Re-enrolling a confirmed user takes a current code; until the new enrolment's first code,
/// a login still needs the code of the confirmed one.
async fn re_enrolment_needs_a_code(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let (uri, _) = enrolled(&t).await;
    let ip = "10.9.4.1";
    let answer = t
        .json(
            ENROLL,
            ip,
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_err(&answer, 403, "mfa_required", "otp");
    t.advance(30);
    let answer = t
        .json(
            ENROLL,
            ip,
            &json!({"username": "alice", "password": PASSWORD, "otp": code(&uri, t.now())}),
        )
        .await;
    let new_uri = assert_ok(&answer)["otpauth_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_uri, uri);
    assert_err(&login_with(&t, ip, "").await, 403, "mfa_required", "otp");
    t.advance(30);
    let answer = t
        .json(
            CONFIRM,
            ip,
            &json!({"username": "alice", "password": PASSWORD, "otp": code(&new_uri, t.now())}),
        )
        .await;
    assert_ok(&answer);
    assert_err(&login_with(&t, ip, "").await, 403, "mfa_required", "otp");
}

async fn every_error_of_the_mfa_routes(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let ip = "10.9.5.1";
    let alice = |extra: Value| {
        let mut body = json!({"username": "alice", "password": PASSWORD});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    // No enrolment to confirm; no code given.
    let answer = t.json(CONFIRM, ip, &alice(json!({"otp": "123456"}))).await;
    assert_err(&answer, 400, "invalid_request", "no enrolment to confirm");
    let answer = t.json(CONFIRM, ip, &alice(json!({}))).await;
    assert_err(&answer, 400, "invalid_request", "otp is required");
    // The caller must prove itself: wrong password, unknown user, missing fields.
    let answer = t
        .json(
            ENROLL,
            ip,
            &json!({"username": "alice", "password": "wrong"}),
        )
        .await;
    assert_err(
        &answer,
        400,
        "invalid_grant",
        "invalid username or password",
    );
    let answer = t
        .json(
            ENROLL,
            ip,
            &json!({"username": "nobody", "password": PASSWORD}),
        )
        .await;
    assert_err(
        &answer,
        400,
        "invalid_grant",
        "invalid username or password",
    );
    let answer = t.json(ENROLL, ip, &json!({"username": "alice"})).await;
    assert_err(&answer, 400, "invalid_request", "password is required");
    let answer = t.json(ENROLL, ip, &json!(["alice"])).await;
    assert_err(&answer, 400, "invalid_request", "JSON object");
    // On a session bound to another subject, neither route acts for alice.
    for path in [ENROLL, CONFIRM] {
        assert_eq!(
            t.bound(path, "someone-else", &alice(json!({"otp": "123456"})))
                .await,
            (403, Some("subject_mismatch".into())),
            "{path}"
        );
    }
    // The client: authenticated, allowed the password grant.
    let answer = t
        .json_as(("c1", "wrong"), ENROLL, ip, &alice(json!({})))
        .await;
    assert_err(&answer, 401, "invalid_client", "");
    let c2 = ("c2", t.env.secret2.as_str());
    let answer = t.json_as(c2, CONFIRM, ip, &alice(json!({}))).await;
    assert_err(&answer, 400, "unauthorized_client", "password grant");
    // Confirmed already, and no enrolment pending: nothing to confirm.
    let (uri, _) = enrolled(&t).await;
    t.advance(30);
    let answer = t
        .json(CONFIRM, ip, &alice(json!({"otp": code(&uri, t.now())})))
        .await;
    assert_err(&answer, 400, "invalid_request", "confirmed already");
    // The rotation of a user with a second factor needs it too.
    let answer = t
        .json(
            "/credentials/password/rotate",
            ip,
            &json!({"username": "alice", "current_password": PASSWORD, "new_password": "a long enough one"}),
        )
        .await;
    assert_err(&answer, 403, "mfa_required", "otp");
}

both!(
    enrolment_confirmation_and_login,
    recovery_codes_work_once,
    no_double_spend,
    re_enrolment_needs_a_code,
    every_error_of_the_mfa_routes,
    a_refused_grant_spends_no_code,
);
