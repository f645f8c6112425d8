//! PostgreSQL over TLS (sqlx with rustls / aws-lc-rs): `sslmode=disable` and `prefer` connect
//! whatever the server offers; `require` connects over TLS when the server has it and fails with
//! a clear error when it does not; `verify-full` checks the certificate. Skipped without
//! IDENTITY_TEST_POSTGRES_URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use identity_api::Db;
use identity_api::storage::Pools;

fn with_sslmode(base: &str, query: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{query}")
}

/// Whether this connection's backend uses TLS.
async fn uses_tls(db: &Db) -> bool {
    let Pools::Postgres(pool) = db.pools() else {
        panic!("postgres")
    };
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set IDENTITY_TEST_POSTGRES_URL"
)]
async fn sslmodes_against_the_test_server() {
    let Some(base) = common::pg_base_url() else {
        eprintln!("IDENTITY_TEST_POSTGRES_URL is not set: skipping the PostgreSQL TLS test");
        return;
    };
    let plain = Db::connect(&with_sslmode(&base, "sslmode=disable"))
        .await
        .unwrap();
    assert!(!uses_tls(&plain).await, "sslmode=disable never uses TLS");
    let Pools::Postgres(pool) = plain.pools() else {
        panic!("postgres")
    };
    let server_tls: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(pool)
        .await
        .unwrap();
    let server_tls = server_tls == "on";
    plain.close().await;

    let prefer = Db::connect(&with_sslmode(&base, "sslmode=prefer"))
        .await
        .unwrap();
    assert_eq!(
        uses_tls(&prefer).await,
        server_tls,
        "prefer: TLS when offered"
    );
    prefer.close().await;

    let require = Db::connect(&with_sslmode(&base, "sslmode=require")).await;
    if server_tls {
        let require = require.unwrap();
        assert!(uses_tls(&require).await, "sslmode=require uses TLS");
        require.close().await;
        // verify-full against the public roots (webpki-roots): a test server's certificate
        // is not signed by one of them, and the error says so.
        let err = Db::connect(&with_sslmode(&base, "sslmode=verify-full"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("certificate"), "{err}");
    } else {
        let err = require.unwrap_err().to_string();
        assert!(err.contains("does not support TLS"), "{err}");
    }
}
