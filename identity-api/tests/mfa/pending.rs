//! An enrolment is pending until its first code confirms it: a confirmed user who enrols again
//! keeps its secret and its recovery codes until then (an enrolment started by someone with the
//! password and one code, and never confirmed, must not turn the second factor off), and
//! `user reset-mfa` clears a pending enrolment too.

use identity_api::storage::{AdminEvent, AuditRow};
use serde_json::{Value, json};

use crate::common::{self, Backend, primary};
use crate::login_common::{Login, PASSWORD, assert_err, assert_ok, setup};
use crate::{CONFIRM, ENROLL, code, enrolled, login_with};

crate::both!(
    an_unconfirmed_enrolment_keeps_the_old_factor,
    a_confirmation_replaces_the_old_factor,
    reset_mfa_clears_a_pending_enrolment,
);

/// Enrols alice again, with `extra` as the proof of her current factor: the new otpauth URI
/// and recovery codes, not confirmed.
async fn re_enrol(t: &Login, ip: &str, extra: Value) -> (String, Vec<String>) {
    let mut body = json!({"username": "alice", "password": PASSWORD});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let answer = t.json(ENROLL, ip, &body).await;
    let body = assert_ok(&answer);
    let codes = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (body["otpauth_uri"].as_str().unwrap().to_owned(), codes)
}

async fn confirm(t: &Login, ip: &str, otp: &str) -> common::oauth::Answer {
    t.json(
        CONFIRM,
        ip,
        &json!({"username": "alice", "password": PASSWORD, "otp": otp}),
    )
    .await
}

/// The `recovery_codes_left` of each `mfa_recovery_code_use` audit row, in order.
async fn codes_left(t: &Login) -> Vec<Value> {
    common::audit_rows(t.env.state.db())
        .await
        .iter()
        .filter(|r| r.event == "mfa_recovery_code_use")
        .map(|r| {
            let detail: Value = serde_json::from_str(r.detail.as_deref().unwrap()).unwrap();
            detail["recovery_codes_left"].clone()
        })
        .collect()
}

async fn an_unconfirmed_enrolment_keeps_the_old_factor(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let (uri, codes) = enrolled(&t).await;
    let ip = "10.9.6.1";
    t.advance(30);
    let (new_uri, new_codes) = re_enrol(&t, ip, json!({"otp": code(&uri, t.now())})).await;
    assert_ne!(new_uri, uri);
    let user = t.user("alice").await;
    assert!(user.totp_confirmed_at.is_some() && user.totp_pending_enc.is_some());
    // The password alone is still not enough.
    assert_err(&login_with(&t, ip, "").await, 403, "mfa_required", "otp");
    let answer = t
        .sealed(ip, &json!({"username": "alice", "password": PASSWORD}))
        .await;
    assert_err(&answer, 403, "mfa_required", "otp");
    // Neither the pending secret's code nor its recovery codes are a second factor yet.
    t.advance(30);
    let answer = login_with(&t, ip, &format!("&otp={}", code(&new_uri, t.now()))).await;
    assert_err(&answer, 400, "invalid_grant", "invalid one-time code");
    let answer = login_with(&t, ip, &format!("&recovery_code={}", new_codes[0])).await;
    assert_err(&answer, 400, "invalid_grant", "recovery code");
    // The confirmed secret's code and recovery codes work as before; the pending codes are not
    // counted among those left.
    assert_ok(&login_with(&t, ip, &format!("&otp={}", code(&uri, t.now()))).await);
    assert_ok(&login_with(&t, ip, &format!("&recovery_code={}", codes[0])).await);
    assert_eq!(codes_left(&t).await, [json!(9)]);
    // The password rotation asks for the confirmed factor too.
    let answer = t
        .json(
            "/credentials/password/rotate",
            ip,
            &json!({"username": "alice", "current_password": PASSWORD, "new_password": "a long enough one"}),
        )
        .await;
    assert_err(&answer, 403, "mfa_required", "otp");
    let rows = common::audit_rows(t.env.state.db()).await;
    let enrol = rows.iter().rfind(|r| r.event == "mfa_enroll").unwrap();
    let detail: Value = serde_json::from_str(enrol.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["mfa_confirmed"], true);
    assert_eq!(detail["replaced_pending"], false);
}

async fn a_confirmation_replaces_the_old_factor(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let (uri, codes) = enrolled(&t).await;
    let ip = "10.9.7.1";
    // A first re-enrolment, replaced by a second before it is confirmed (proved by a recovery
    // code this time): only the latest can be confirmed.
    t.advance(30);
    let (first_uri, first_codes) = re_enrol(&t, ip, json!({"otp": code(&uri, t.now())})).await;
    let (new_uri, new_codes) = re_enrol(&t, ip, json!({"recovery_code": codes[0]})).await;
    let answer = login_with(&t, ip, &format!("&recovery_code={}", first_codes[0])).await;
    assert_err(&answer, 400, "invalid_grant", "recovery code");
    t.advance(30);
    let answer = confirm(&t, ip, &code(&first_uri, t.now())).await;
    assert_err(&answer, 400, "invalid_grant", "invalid one-time code");
    // A wrong code is a failed login each time: the right password does not clear the count,
    // so guessing the pending secret's code runs into the lockout.
    let answer = confirm(&t, ip, "000000x").await;
    assert_err(&answer, 400, "invalid_grant", "invalid one-time code");
    assert_eq!(t.failures("alice").await, 3);
    let answer = confirm(&t, ip, &code(&new_uri, t.now())).await;
    assert_eq!(assert_ok(&answer)["mfa"], "confirmed");
    assert_eq!(t.failures("alice").await, 0);
    let user = t.user("alice").await;
    assert!(user.totp_pending_enc.is_none());
    assert_eq!(user.totp_confirmed_at, Some(t.now()));
    // The step of the confirmation is spent.
    let answer = login_with(&t, ip, &format!("&otp={}", code(&new_uri, t.now()))).await;
    assert_err(&answer, 400, "invalid_grant", "invalid one-time code");
    // The old secret's code and recovery codes are gone; the new ones work.
    t.advance(30);
    let answer = login_with(&t, ip, &format!("&otp={}", code(&uri, t.now()))).await;
    assert_err(&answer, 400, "invalid_grant", "invalid one-time code");
    let answer = login_with(&t, ip, &format!("&recovery_code={}", codes[1])).await;
    assert_err(&answer, 400, "invalid_grant", "recovery code");
    assert_ok(&login_with(&t, ip, &format!("&otp={}", code(&new_uri, t.now()))).await);
    assert_ok(&login_with(&t, ip, &format!("&recovery_code={}", new_codes[0])).await);
    assert_err(&login_with(&t, ip, "").await, 403, "mfa_required", "otp");
    // codes[0] proved the second re-enrolment (9 old ones left then); new_codes[0] leaves the
    // other 9 new ones.
    assert_eq!(codes_left(&t).await, [json!(9), json!(9)]);
    // Confirmed, nothing pending: nothing to confirm.
    t.advance(30);
    let answer = confirm(&t, ip, &code(&new_uri, t.now())).await;
    assert_err(&answer, 400, "invalid_request", "confirmed already");
}

async fn reset_mfa_clears_a_pending_enrolment(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let ip = "10.9.8.1";
    let reset = async || {
        let now = t.now();
        let user_id = t.alice.user_id.clone();
        t.env
            .state
            .db()
            .reset_user_mfa(primary(), &user_id, now, |_| {
                AuditRow::user_admin(
                    now,
                    AdminEvent::UserResetMfa,
                    "test",
                    primary(),
                    &user_id,
                    json!({}),
                )
            })
            .await
            .unwrap()
            .unwrap()
    };
    // A first enrolment, never confirmed.
    let (uri, _) = re_enrol(&t, ip, json!({})).await;
    let r = reset().await;
    assert!(!r.had_totp && r.had_pending);
    assert_eq!(r.recovery_codes, 10);
    let answer = confirm(&t, ip, &code(&uri, t.now())).await;
    assert_err(&answer, 400, "invalid_request", "no enrolment to confirm");
    // A confirmed one with a re-enrolment pending: both go, and all the codes.
    let (uri, _) = enrolled(&t).await;
    t.advance(30);
    let (new_uri, _) = re_enrol(&t, ip, json!({"otp": code(&uri, t.now())})).await;
    let r = reset().await;
    assert!(r.had_totp && r.had_pending);
    assert_eq!(r.recovery_codes, 20);
    let user = t.user("alice").await;
    assert!(user.totp_secret_enc.is_none() && user.totp_pending_enc.is_none());
    assert!(user.totp_confirmed_at.is_none() && user.totp_last_step.is_none());
    assert_ok(&login_with(&t, ip, "").await);
    t.advance(30);
    let answer = confirm(&t, ip, &code(&new_uri, t.now())).await;
    assert_err(&answer, 400, "invalid_request", "no enrolment to confirm");
    // The user may enrol afresh; only the new codes are hers.
    enrolled(&t).await;
    let db = t.env.state.db();
    assert_eq!(
        db.unused_recovery_codes(&t.alice.user_id).await.unwrap(),
        10
    );
}
