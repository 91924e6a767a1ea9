//! CPU time of finished child processes and RSS of running ones, from `/proc` (Linux).
//!
//! `/proc/self/stat` fields `cutime`/`cstime` count the CPU of every child this process has waited
//! for, so the delta around one `wait` is that child's CPU, JVM or native alike.

use std::fs;
use std::io::Read as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on every Linux ABI).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) of all waited-for children of this process so far.
pub fn children_cpu_secs() -> std::io::Result<f64> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    parse_children_cpu(&stat).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "unexpected /proc/self/stat",
        )
    })
}

fn parse_children_cpu(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces and parentheses: fields restart after the
    // last ')'. There, index 0 is field 3 (state); cutime/cstime are fields 16 and 17.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cutime: f64 = f.get(13)?.parse().ok()?;
    let cstime: f64 = f.get(14)?.parse().ok()?;
    Some((cutime + cstime) / TICKS_PER_SEC)
}

/// Resident set size of process `pid` in KiB (`VmRSS`), `None` if it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident set size of process `pid` so far in KiB (`VmHWM`, the kernel's high-water
/// mark), `None` if it is gone (or a zombie).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// A child run to completion by [`run_watched`].
#[derive(Debug)]
pub struct Watched {
    /// How it ended.
    pub status: ExitStatus,
    /// Its whole stdout.
    pub stdout: String,
    /// Its whole stderr.
    pub stderr: String,
    /// Its peak RSS in KiB: the last `VmHWM` read before it exited.
    pub peak_rss_kib: u64,
}

/// How often [`run_watched`] reads the child's `VmHWM`.
const WATCH_EVERY: Duration = Duration::from_millis(10);

/// Runs `cmd` to completion (stdin null, stdout and stderr captured), reading its `VmHWM` every
/// 10 ms. `VmHWM` is a high-water mark, so the figure misses only growth in the child's last
/// 10 ms (its exit), not peaks between samples.
pub fn run_watched(cmd: &mut Command) -> std::io::Result<Watched> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let mut peak = 0u64;
    let status = loop {
        if let Some(k) = peak_rss_kib(pid) {
            peak = peak.max(k);
        }
        if let Some(st) = child.try_wait()? {
            break st;
        }
        std::thread::sleep(WATCH_EVERY);
    };
    Ok(Watched {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        peak_rss_kib: peak,
    })
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cutime_and_cstime_after_a_tricky_comm() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime ...
        let stat = "42 (a) b) S 1 42 42 0 -1 4194304 10 20 0 0 5 6 250 50 20 0 1 0";
        assert_eq!(parse_children_cpu(stat), Some(3.0));
        assert_eq!(parse_children_cpu("garbage"), None);
    }

    #[test]
    fn a_waited_child_adds_cpu_and_we_have_an_rss() {
        let before = children_cpu_secs().unwrap();
        let st = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(st.success());
        let after = children_cpu_secs().unwrap();
        assert!(after > before, "{before} -> {after}");
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(peak_rss_kib(std::process::id()).unwrap() >= rss_kib(std::process::id()).unwrap());
    }

    #[test]
    fn a_watched_child_has_a_peak_rss_and_its_output() {
        let w = run_watched(Command::new("sh").args(["-c", "echo out; echo err >&2; sleep 0.1"]))
            .unwrap();
        assert!(w.status.success());
        assert_eq!((w.stdout.as_str(), w.stderr.as_str()), ("out\n", "err\n"));
        assert!(w.peak_rss_kib > 0, "{w:?}");
    }
}
