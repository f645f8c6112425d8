//! The journey on PostgreSQL, when IDENTITY_TEST_POSTGRES_URL is set (skipped with a printed
//! notice otherwise; a failure when it is set and the server cannot be reached): the identity API
//! on a fresh schema, the example client's journey through the sidecar, reuse detection, and
//! state surviving an identity API restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::anyhow;
use e2e_tests::{Env, PgSchema, StackConfig, ok_tokens, postgres_base_url};
use identity_sidecar_examples::journey;
use identity_sidecar_examples::output::hint;

async fn env_on_postgres() -> anyhow::Result<Option<(Env, PgSchema)>> {
    let Some(base) = postgres_base_url() else {
        eprintln!("IDENTITY_TEST_POSTGRES_URL is not set: skipping the PostgreSQL end-to-end test");
        return Ok(None);
    };
    let schema = PgSchema::create(&base).await?;
    let env = Env::with(StackConfig {
        database_url: Some(schema.url.clone()),
        ..StackConfig::default()
    })
    .await?;
    Ok(Some((env, schema)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set IDENTITY_TEST_POSTGRES_URL"
)]
async fn the_journey_on_postgres() -> anyhow::Result<()> {
    let Some((env, schema)) = env_on_postgres().await? else {
        return Ok(());
    };
    assert!(env.stack.database_url().starts_with("postgres"));
    let outcome = journey::run(&env.journey_settings("pg-user"), &mut |_| {})
        .await
        .map_err(|f| anyhow!("{f}\nhint: {}", hint(&f)))?;
    assert_eq!(outcome.steps.len(), 7);
    drop(env);
    schema.drop_schema().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set IDENTITY_TEST_POSTGRES_URL"
)]
async fn reuse_detection_and_restart_on_postgres() -> anyhow::Result<()> {
    let Some((mut env, schema)) = env_on_postgres().await? else {
        return Ok(());
    };
    let session = env.anonymous().await?;
    let first = env.issue(&session, "pg-user").await?;
    env.stack.restart_api().await?;
    env.stack.wait_sidecar_ready().await?;
    let second = ok_tokens(
        &env.refresh(&session, &first.access_token, &first.refresh_token)
            .await?,
    )?;
    let reuse = env
        .refresh(&session, &first.access_token, &first.refresh_token)
        .await?;
    assert_eq!(
        (reuse.status, reuse.error()),
        (400, Some("invalid_grant")),
        "{reuse:?}"
    );
    let other = env.issue(&session, "pg-user").await?;
    let answer = env
        .introspect(&session, &other.access_token, &second.access_token)
        .await?;
    assert_eq!(answer.body, serde_json::json!({ "active": false }));
    drop(env);
    schema.drop_schema().await
}
