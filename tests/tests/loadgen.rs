//! `loadgen` against the real binaries, briefly: every scenario pair answers, rounds and an
//! offered rate are reported, and a refused request counts as an error (exit code 1), never as
//! a success. Figures are not checked: benchmarks are not tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use serde_json::Value;

/// Runs `loadgen --local` on the workspace's binaries with tiny bounds and `--json`.
fn loadgen(args: &[&str]) -> (Option<i32>, Value) {
    let dir = e2e_tests::profile_dir().unwrap();
    let exe = dir.join("loadgen");
    assert!(exe.exists(), "{} is not built", exe.display());
    let out = Command::new(exe)
        .args(["--local", "--bin-dir"])
        .arg(&dir)
        .args(["-c", "2", "--duration-secs", "2", "--warmup-secs", "0"])
        .args(["--requests", "20", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), doc)
}

#[test]
fn rounds_at_an_offered_rate_report_both_pairs() {
    let (code, doc) = loadgen(&[
        "--scenarios",
        "introspect,introspect-direct,jwks,jwks-direct",
        "--rounds",
        "2",
        "--rate",
        "40",
    ]);
    assert_eq!(code, Some(0), "{doc:#}");
    let scenarios = doc["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 8, "four scenarios, two rounds");
    for s in scenarios {
        assert!(s["ok"].as_u64().unwrap() > 0, "{s}");
        assert_eq!(s["errors"], 0, "{s}");
        assert_eq!(s["offered_per_sec"], 40, "{s}");
    }
    assert_eq!(doc["introspect_overhead"].as_array().unwrap().len(), 2);
    assert!(doc["median_introspect_overhead"]["added_p50_ms"].is_f64());
    assert!(doc["median_jwks_pass_through_overhead"]["throughput_ratio"].is_f64());
}

#[test]
fn a_refused_request_is_an_error_not_a_success() {
    // A sidecar that allows 3 session inits from one address: the rest are 429.
    let (code, doc) = loadgen(&[
        "--scenarios",
        "init",
        "--sidecar-env",
        "SIDECAR_INIT_BURST=3",
        "--sidecar-env",
        "SIDECAR_INIT_RATE_PER_SEC=0.001",
    ]);
    assert_eq!(code, Some(1), "{doc:#}");
    let init = &doc["scenarios"][0];
    assert_eq!(init["ok"], 3, "{init}");
    assert_eq!(init["errors"], 17, "{init}");
    let kinds = init["error_kinds"].as_object().unwrap();
    assert!(kinds.keys().all(|k| k.contains("429")), "{kinds:?}");
}

#[test]
fn the_standard_endpoints_scenarios_answer() {
    let (code, doc) = loadgen(&[
        "--scenarios",
        "issue-direct,oauth-token-direct,introspect-direct,oauth-introspect-direct",
    ]);
    assert_eq!(code, Some(0), "{doc:#}");
    let scenarios = doc["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 4);
    for s in scenarios {
        assert!(s["ok"].as_u64().unwrap() > 0, "{s}");
        assert_eq!(s["errors"], 0, "{s}");
    }
}

#[test]
fn tenants_carry_every_scenario_with_their_own_clients() {
    // Two workers, three tenants: worker 0 sends as t1 and t3 in turn, worker 1 as t2.
    let (code, doc) = loadgen(&[
        "--tenants",
        "3",
        "--scenarios",
        "introspect,issue,refresh,introspect-direct,issue-direct,refresh-direct,\
         oauth-token-direct,oauth-introspect-direct",
    ]);
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(doc["tenants"], 3);
    let scenarios = doc["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 8);
    for s in scenarios {
        assert!(s["ok"].as_u64().unwrap() > 0, "{s}");
        assert_eq!(s["errors"], 0, "{s}");
    }
}
