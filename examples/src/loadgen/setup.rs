//! What a run drives: a `--local` stack started here (optionally pinned to CPUs), or the
//! loopback URLs and credentials given.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use identity_client::{Client, Routes, no_retries};
use identity_launcher::{Binaries, SeededClient, Signing, Stack, StackConfig};
use identity_protocol::paths;

use super::cli::{Cli, require_loopback, words};
use super::procfs::Pids;
use super::scenarios::Target;

/// What the run was pointed at, and how.
pub(super) struct Setup {
    pub(super) target: Arc<Target>,
    pub(super) pids: Pids,
    /// Keeps a `--local` stack running until the end.
    pub(super) stack: Option<Stack>,
}

/// Starts the `--local` stack, or checks the remote one is on loopback, and builds the target.
pub(super) async fn setup(cli: &Cli) -> anyhow::Result<Setup> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(usize::try_from(cli.concurrency).unwrap_or(usize::MAX) * 2)
        .retry(no_retries())
        .build()
        .context("cannot build an HTTP client")?;
    if cli.local {
        let beside_us = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Binaries::in_dir))
            .filter(|b| b.missing().is_empty());
        let binaries = match (&cli.bin_dir, beside_us) {
            (Some(dir), _) => Binaries::in_dir(dir),
            (None, Some(found)) => found,
            (None, None) => {
                eprintln!(
                    "loadgen: building the binaries (cargo build -p identity-api -p identity-sidecar --bins)"
                );
                Binaries::build()?
            }
        };
        eprintln!(
            "loadgen: starting {} and {}",
            binaries.identity_api.display(),
            binaries.sidecar.display()
        );
        let mut sidecar_env = vec![
            // One client address makes every init: the per-IP limit would measure itself.
            ("SIDECAR_INIT_RATE_PER_SEC".to_owned(), "1000000".to_owned()),
            ("SIDECAR_INIT_BURST".to_owned(), "1000000".to_owned()),
        ];
        if let Some(n) = cli.memory_sessions {
            sidecar_env.push(("SIDECAR_MAX_SESSIONS".into(), (n + 1000).to_string()));
            sidecar_env.push(("SIDECAR_ANONYMOUS_TTL_SECS".into(), "3600".into()));
        }
        if let Some(cpus) = &cli.sidecar_cpus {
            // As a CPU limit does in the pod: the sidecar sizes its runtime to its CPUs, which
            // pinning after the start would not tell it.
            let n =
                cpu_count(cpus).ok_or_else(|| anyhow!("--sidecar-cpus {cpus}: not a CPU list"))?;
            sidecar_env.push(("SIDECAR_WORKER_THREADS".into(), n.to_string()));
        }
        sidecar_env.extend(cli.sidecar_env.iter().cloned());
        let config = StackConfig {
            client_id: "loadgen".into(),
            signing: Signing::KeyFile,
            sidecar_env,
            api_env: cli.api_env.clone(),
            database_url: cli.database_url.clone(),
            unix_socket: cli.unix_socket,
            sidecar_wrapper: words(cli.sidecar_wrapper.as_deref()),
            api_wrapper: words(cli.api_wrapper.as_deref()),
            ..StackConfig::default()
        };
        let (scope, audience) = (config.scope.clone(), config.audience.clone());
        let stack = Stack::start(binaries, config).await?;
        if let (Some(sidecar), Some(others)) = (&cli.sidecar_cpus, &cli.other_cpus) {
            pin(stack.sidecar_pid(), sidecar)?;
            pin(stack.api_pid(), others)?;
            pin(Some(std::process::id()), others)?;
            eprintln!(
                "loadgen: sidecar on CPUs {sidecar}, loadgen and identity-api on CPUs {others}"
            );
        }
        eprintln!(
            "loadgen: identity-api at {} (pid {:?}), identity-sidecar at {} (pid {:?}), data in {}",
            stack.api_url(),
            stack.api_pid(),
            stack.sidecar_url(),
            stack.sidecar_pid(),
            stack.dir().display()
        );
        let client = Client::with_http(
            http.clone(),
            &stack.sidecar_url(),
            stack.pinned_key.as_deref(),
        )
        .await?;
        let clients = tenants(&stack, &http, cli, &scope, &audience).await?;
        let target = Target {
            client,
            http,
            api: Routes::new(&stack.api_url())?,
            internal_token: Some(stack.internal_token().to_owned()),
            clients,
            subject: cli.subject.clone(),
        };
        let pids = Pids {
            sidecar: stack.sidecar_pid(),
            api: stack.api_pid(),
        };
        return Ok(Setup {
            target: Arc::new(target),
            pids,
            stack: Some(stack),
        });
    }
    require_loopback(&cli.sidecar_url)?;
    require_loopback(&cli.api_url)?;
    let (Some(client_id), Some(client_secret)) = (&cli.client_id, &cli.client_secret) else {
        bail!("CLIENT_ID and CLIENT_SECRET are required (or use --local)");
    };
    let client = Client::with_http(
        http.clone(),
        &cli.sidecar_url,
        cli.sidecar_public_key.as_deref(),
    )
    .await?;
    Ok(Setup {
        target: Arc::new(Target {
            client,
            http,
            api: Routes::new(&cli.api_url)?,
            internal_token: cli.internal_token.clone(),
            clients: vec![SeededClient {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
            }],
            subject: cli.subject.clone(),
        }),
        pids: Pids {
            sidecar: cli.sidecar_pid,
            api: cli.api_pid,
        },
        stack: None,
    })
}

/// The clients the workers send as: the seeded client of the default tenant, or with
/// `--tenants` (or an `--algorithm` other than ES256) one client in each of the tenants t1..tN
/// created here, returned once every tenant publishes its first signing key.
async fn tenants(
    stack: &Stack,
    http: &reqwest::Client,
    cli: &Cli,
    scope: &str,
    audience: &str,
) -> anyhow::Result<Vec<SeededClient>> {
    let n = cli.tenant_count();
    if n == 0 {
        return Ok(vec![stack.client.clone()]);
    }
    let started = Instant::now();
    let mut clients = Vec::new();
    for k in 1..=n {
        let slug = format!("t{k}");
        stack
            .run_cli(&["tenant", "create", &slug, "--algorithm", &cli.algorithm])
            .await?;
        let id = format!("loadgen-{slug}");
        let client = stack
            .create_client_with(&id, scope, audience, &["--tenant", &slug])
            .await?;
        clients.push(client);
    }
    // The running server makes each tenant's first key at its next reload (every second).
    let deadline = Instant::now() + Duration::from_secs(30);
    for k in 1..=n {
        let url = format!(
            "{}{}t{k}{}",
            stack.api_url(),
            paths::TENANT_PREFIX,
            paths::JWKS
        );
        while !has_keys(http, &url).await {
            if Instant::now() > deadline {
                bail!("tenant t{k} published no signing key within 30 s ({url})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "loadgen: {n} tenants t1..t{n} ({}), a client in each, in {:.1} s",
        cli.algorithm,
        started.elapsed().as_secs_f64()
    );
    Ok(clients)
}

/// Whether the JWKS at `url` lists a key.
async fn has_keys(http: &reqwest::Client, url: &str) -> bool {
    let Ok(answer) = http.get(url).send().await else {
        return false;
    };
    if !answer.status().is_success() {
        return false;
    }
    answer
        .json::<serde_json::Value>()
        .await
        .is_ok_and(|jwks| jwks["keys"].as_array().is_some_and(|keys| !keys.is_empty()))
}

/// How many CPUs a taskset list (`1`, `0-3`, `0,2-3`) names.
fn cpu_count(list: &str) -> Option<usize> {
    let mut n = 0;
    for item in list.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let cpu = item.trim().parse::<usize>().ok()?;
                (cpu, cpu)
            }
        };
        n += last.checked_sub(first)? + 1;
    }
    (n > 0).then_some(n)
}

/// Sets the CPU affinity of every thread of `pid` (`taskset -a -cp`); threads started later
/// inherit it from the thread that starts them.
fn pin(pid: Option<u32>, cpus: &str) -> anyhow::Result<()> {
    let pid = pid.ok_or_else(|| anyhow!("no process id to pin"))?;
    let status = std::process::Command::new("taskset")
        .args(["-a", "-cp", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset -a -cp {cpus} {pid} failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_count("1"), Some(1));
        assert_eq!(cpu_count("0-3"), Some(4));
        assert_eq!(cpu_count("0,2-3"), Some(3));
        assert_eq!(cpu_count("3-1"), None);
        assert_eq!(cpu_count("x"), None);
        assert_eq!(cpu_count(""), None);
    }
}
