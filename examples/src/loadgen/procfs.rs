//! What loadgen reads from /proc: a process's CPU time (utime + stime) and its RSS.

/// Process ids whose CPU time is read around each scenario.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Pids {
    pub(super) sidecar: Option<u32>,
    pub(super) api: Option<u32>,
}

/// utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat).
pub(super) fn cpu_seconds(pid: &str, ticks_per_sec: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: split after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_sec)
}

/// Clock ticks per second, the unit of /proc's CPU times (100 when getconf cannot tell).
pub(super) fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
