//! The binary's tenant commands: `tenant create|list|disable|enable`, `client create --tenant`,
//! the `--tenant` of the other client commands, `keys rotate --tenant`, their refusals, and
//! what a server built on the database then serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, ISSUER, basic, cmd, database, new_kek_text, run, state_on};
use serde_json::Value;

both!(tenant_commands);

async fn tenant_commands(b: Backend) {
    let Some((url, _dir)) = database(b).await else {
        return;
    };
    let kek = new_kek_text();
    let with = |args: &[&str]| {
        let mut c = cmd(args);
        c.env("IDENTITY_KEY_ENCRYPTION_KEY", &kek)
            .env("IDENTITY_DATABASE_URL", &url);
        c
    };
    let ok = |args: &[&str]| {
        let (ok, out, err) = run(&mut with(args));
        assert!(ok, "{args:?}: {err}");
        out
    };
    let refused = |args: &[&str]| {
        let (ok, out, err) = run(&mut with(args));
        assert!(!ok, "{args:?} succeeded: {out}");
        err
    };

    // The default tenant exists from the first command on.
    let listed = ok(&["tenant", "list", "--json"]);
    let first: Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(first["tenant"], "primary");
    assert_eq!(first["algorithm"], "ES256");

    let created = ok(&[
        "tenant",
        "create",
        "acme",
        "--display-name",
        "Acme Corp",
        "--access-token-ttl-secs",
        "300",
        "--json",
    ]);
    let created: Value = serde_json::from_str(created.trim()).unwrap();
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["access_token_ttl_secs"], 300);
    ok(&[
        "tenant",
        "create",
        "beta",
        "--issuer",
        "https://beta.example.com",
    ]);
    let text = ok(&["tenant", "list"]);
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, ["acme", "beta", "primary"]);
    let pem = |der: &[u8]| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
    };

    // Refusals name what is wrong.
    let err = refused(&["tenant", "create", "acme"]);
    assert!(err.contains("tenant acme already exists"), "{err}");
    let err = refused(&["tenant", "create", "Bad_Slug"]);
    assert!(err.contains("invalid tenant"), "{err}");
    let err = refused(&["tenant", "create", "x1", "--algorithm", "HS256"]);
    assert!(err.contains("JWKS") && err.contains("mint"), "{err}");
    let err = refused(&["tenant", "create", "x2", "--algorithm", "PS512"]);
    assert!(err.contains("ES256"), "{err}");
    let err = refused(&["tenant", "create", "x3", "--issuer", "beta.example.com"]);
    assert!(err.contains("--issuer"), "{err}");
    // A key reference is read now: a missing file or a key of another algorithm is refused,
    // naming the reference.
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("file:{}", dir.path().join("missing.pem").display());
    let err = refused(&["tenant", "create", "x4", "--signing-key-ref", &missing]);
    assert!(
        err.contains(&missing) || err.contains("missing.pem"),
        "{err}"
    );
    let (_, der) =
        identity_api::signing::SigningKey::generate(identity_api::signing::Algorithm::EdDsa)
            .unwrap();
    let pem_path = dir.path().join("ed.pem");
    std::fs::write(&pem_path, pem(&der)).unwrap();
    let reference = format!("file:{}", pem_path.display());
    let err = refused(&["tenant", "create", "x5", "--signing-key-ref", &reference]);
    assert!(err.contains("EdDSA") && err.contains("ES256"), "{err}");
    ok(&[
        "tenant",
        "create",
        "ext",
        "--algorithm",
        "EdDSA",
        "--signing-key-ref",
        &reference,
    ]);
    let err = refused(&[
        "tenant",
        "create",
        "x6",
        "--signing-key-ref",
        "vault:secret/x",
    ]);
    assert!(err.contains("not a signing key reference"), "{err}");
    let err = refused(&["tenant", "disable", "nope"]);
    assert!(err.contains("no tenant nope"), "{err}");
    let err = refused(&["keys", "rotate", "--tenant", "nope"]);
    assert!(err.contains("no tenant nope"), "{err}");

    // Clients: in the default tenant unless --tenant says otherwise; ids are unique across
    // tenants; the other commands check --tenant when given.
    let secret = |out: String| -> String {
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        v["client_secret"].as_str().unwrap().to_owned()
    };
    let common_args = ["--scope", "s", "--audience", "a", "--json"];
    let acme_secret = secret(ok(&[
        &["client", "create", "acme-app", "--tenant", "acme"][..],
        &common_args,
    ]
    .concat()));
    let primary_secret = secret(ok(
        &[&["client", "create", "main-app"][..], &common_args].concat()
    ));
    let err = refused(
        &[
            &["client", "create", "acme-app", "--tenant", "beta"][..],
            &common_args,
        ]
        .concat(),
    );
    assert!(err.contains("already exists"), "{err}");
    let err = refused(
        &[
            &["client", "create", "c", "--tenant", "nope"][..],
            &common_args,
        ]
        .concat(),
    );
    assert!(err.contains("no tenant nope"), "{err}");
    let listed = ok(&["client", "list", "--tenant", "acme", "--json"]);
    let rows: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (&rows[0]["client_id"], &rows[0]["tenant"]),
        (&"acme-app".into(), &"acme".into())
    );
    let err = refused(&["client", "disable", "acme-app", "--tenant", "primary"]);
    assert!(err.contains("no client acme-app"), "{err}");
    ok(&["client", "disable", "acme-app", "--tenant", "acme"]);
    ok(&["client", "enable", "acme-app"]);

    // A server on this database: each tenant's issuer, and its clients in it only.
    let state = state_on(&url, &kek, common::settings()).await;
    let app = identity_api::app(state.clone());
    let issue = |path: &'static str, id: &'static str, secret: String| {
        let app = app.clone();
        async move {
            common::send_form(
                &app,
                path,
                &[("authorization", &basic(id, &secret))],
                "grant_type=client_credentials",
            )
            .await
        }
    };
    let (status, body) = issue("/t/acme/oauth/token", "acme-app", acme_secret.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = common::claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims.iss, format!("{ISSUER}/t/acme"));
    assert_eq!(
        claims.exp - claims.iat,
        300,
        "the tenant's access-token lifetime"
    );
    let (status, _) = issue("/t/acme/oauth/token", "main-app", primary_secret.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, doc) = common::send(
        &app,
        "GET",
        "/t/beta/.well-known/openid-configuration",
        &[],
        vec![],
    )
    .await;
    assert_eq!(doc["issuer"], "https://beta.example.com");

    // The key `ext` signs with (recorded by the server above) is refused to another tenant.
    let err = refused(&[
        "tenant",
        "create",
        "ext2",
        "--algorithm",
        "EdDSA",
        "--signing-key-ref",
        &reference,
    ]);
    assert!(
        err.contains("one tenant only") && err.contains("ext"),
        "{err}"
    );

    // keys rotate --tenant: a new key in that tenant's JWKS only.
    let out = ok(&["keys", "rotate", "--tenant", "acme"]);
    assert!(out.contains("of tenant acme"), "{out}");
    state.reload_keys().await.unwrap();
    let kids = |path: &'static str| {
        let app = app.clone();
        async move {
            let (_, body) = common::send(&app, "GET", path, &[], vec![]).await;
            body["keys"].as_array().unwrap().len()
        }
    };
    assert_eq!(kids("/t/acme/.well-known/jwks.json").await, 2);
    assert_eq!(kids("/.well-known/jwks.json").await, 1);

    // Disable: at once for the tenant's clients; enable brings them back.
    ok(&["tenant", "disable", "acme"]);
    let (status, _) = issue("/oauth/token", "acme-app", acme_secret.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = issue("/oauth/token", "main-app", primary_secret.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let listed = ok(&["tenant", "list", "--json"]);
    assert!(listed.contains(r#""enabled":false"#), "{listed}");
    ok(&["tenant", "enable", "acme"]);
    state.reload_keys().await.unwrap();
    let (status, _) = issue("/oauth/token", "acme-app", acme_secret).await;
    assert_eq!(status, StatusCode::OK);

    // Every change was audited in its tenant.
    let audit = ok(&["audit", "export", "--event", "tenant_disable"]);
    let row: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(row["tenant"], "acme", "{row}");
}
