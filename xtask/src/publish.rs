//! Fast checks of what users get from crates.io and the repository's docs, run by `cargo xtask test`:
//!
//! * [`package`]: `cargo package` of every published crate (manifests, version requirements on path
//!   dependencies, file lists). `--no-verify`: the build itself is what the rest of the run checks,
//!   and verifying would compile every crate a second time from its tarball (minutes on 2 cores).
//! * [`msrv`]: every workspace crate states the workspace's `rust-version`, and no dependency in
//!   `Cargo.lock` needs a newer Rust. Together with clippy's `incompatible_msrv` lint (on by
//!   default, reads `rust-version`; clippy runs with `-D warnings`), which flags std APIs newer than
//!   the MSRV, this stands in for a build on the MSRV toolchain, which would be a second full build
//!   of the workspace with another compiler.
//! * [`doc_refs`]: every `docs/site-to-site.md §N` (or legacy `spec §N`) reference in the code
//!   names a section or byte vector that exists in `docs/site-to-site.md`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::test::{run, workspace_root};

/// The crates published to crates.io, in dependency order.
pub(crate) const PUBLISHED: [&str; 5] = [
    "nifi-s2s-proto",
    "nifi-testkit",
    "nifi-s2s",
    "nifi-s2s-bridge-protocol",
    "nifi-s2s-bridge",
];

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo package` of every published crate at once: since cargo 1.90 the unpublished path
/// dependencies among them resolve from the packages being built (a local overlay), not from
/// crates.io. `--allow-dirty` because developers run this with uncommitted work.
pub(crate) fn package() -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["package", "--no-verify", "--allow-dirty"]);
    for c in PUBLISHED {
        cmd.args(["-p", c]);
    }
    run(&mut cmd)
}

/// Checks the MSRV statements (see the module doc).
pub(crate) fn msrv() -> Result<()> {
    eprintln!("\n==> MSRV: rust-version of the workspace crates and of every locked dependency");
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let problems = msrv_problems(&meta)?;
    if !problems.is_empty() {
        bail!("MSRV check failed:\n  {}", problems.join("\n  "));
    }
    eprintln!("<== ok");
    Ok(())
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.').map(|p| p.parse::<u64>());
    let major = it.next()?.ok()?;
    let minor = it.next().unwrap_or(Ok(0)).ok()?;
    let patch = it.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// What is wrong with the MSRV statements in `cargo metadata` output.
fn msrv_problems(meta: &serde_json::Value) -> Result<Vec<String>> {
    let packages = meta["packages"].as_array().context("metadata: packages")?;
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .context("metadata: workspace_members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let rust_version = |p: &serde_json::Value| p["rust_version"].as_str().map(str::to_owned);
    let msrv_text = packages
        .iter()
        .find(|p| p["name"] == "nifi-s2s-proto")
        .and_then(rust_version)
        .context("nifi-s2s-proto states no rust-version")?;
    let msrv = parse_version(&msrv_text).context("unparsable rust-version")?;
    let mut problems = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or("?");
        let member = p["id"].as_str().is_some_and(|id| members.contains(id));
        match (member, rust_version(p)) {
            (true, None) => problems.push(format!("{name}: no rust-version")),
            (true, Some(v)) if v != msrv_text => {
                problems.push(format!("{name}: rust-version {v}, workspace {msrv_text}"));
            }
            (false, Some(v)) if parse_version(&v).is_some_and(|dep| dep > msrv) => {
                problems.push(format!(
                    "dependency {name} {} needs Rust {v} > {msrv_text}",
                    p["version"]
                ))
            }
            _ => {}
        }
    }
    Ok(problems)
}

/// The document the code's `§` references point at.
pub(crate) const SPEC: &str = "docs/site-to-site.md";

/// Fails if a `§` reference to [`SPEC`] anywhere in the repository (or inside [`SPEC`] itself)
/// names a section or byte vector the document does not have.
pub(crate) fn doc_refs() -> Result<()> {
    eprintln!("\n==> {SPEC}: every § reference resolves");
    let root = workspace_root();
    let broken = broken_refs(&root)?;
    if !broken.is_empty() {
        bail!(
            "references to missing sections of {SPEC}:\n  {}",
            broken.join("\n  ")
        );
    }
    eprintln!("<== ok");
    Ok(())
}

fn broken_refs(root: &Path) -> Result<Vec<String>> {
    let spec_text =
        std::fs::read_to_string(root.join(SPEC)).with_context(|| format!("reading {SPEC}"))?;
    let anchors = anchors(&spec_text);
    let out = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .context("git ls-files")?;
    let mut broken = Vec::new();
    for file in String::from_utf8_lossy(&out.stdout).lines() {
        let text_like = [".rs", ".md", ".toml", ".ts", ".js", ".mjs", ".java"]
            .iter()
            .any(|e| file.ends_with(e));
        if !text_like {
            continue;
        }
        // Deleted but still in the index: nothing to check.
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        let own = file == SPEC;
        for (n, line) in text.lines().enumerate() {
            for r in references(line, own) {
                if !anchors.contains(&r) {
                    broken.push(format!("{file}:{}: {r}", n + 1));
                }
            }
        }
    }
    Ok(broken)
}

/// Section numbers (`2.3`, `14`) and byte vector names (`TV5`) that head a section of the spec.
fn anchors(spec: &str) -> BTreeSet<String> {
    spec.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .map(|t| t.trim_end_matches('.').to_owned())
        .filter(|t| is_section(t) || is_vector(t))
        .collect()
}

fn is_section(t: &str) -> bool {
    !t.is_empty()
        && t.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_vector(t: &str) -> bool {
    t.strip_prefix("TV")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Words after which a `§` points at the spec. (`PROTOCOL.md §5` is the bridge's own document.)
const MARKERS: [&str; 4] = ["site-to-site.md", "spec", "Spec", "Reference"];

/// The spec anchors a line refers to. Outside the spec a reference starts at a marker word
/// directly followed by `§` and runs through a list such as `§2.1, §2.2, §2.7` or
/// `§14 TV1, TV5–TV8`; inside the spec (`own`) every `§` counts except after `PROTOCOL.md`.
fn references(line: &str, own: bool) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find('§') {
        let before = rest[..i].trim_end().trim_end_matches(['`', ')']);
        let after = &rest[i..];
        let marked = MARKERS.iter().any(|m| before.ends_with(m));
        let foreign = before.ends_with("PROTOCOL.md") || before.ends_with("RFC 6750");
        if (own && !foreign) || (!own && marked) {
            let used = parse_list(after, &mut refs);
            rest = &after[used..];
        } else {
            rest = &after['§'.len_utf8()..];
        }
    }
    refs
}

/// Parses `§A[ TVn[–TVm]][, §B …]` at the start of `s`; returns the bytes consumed.
fn parse_list(s: &str, refs: &mut Vec<String>) -> usize {
    let mut pos = 0;
    while let Some(body) = s[pos..].strip_prefix('§') {
        pos += '§'.len_utf8();
        let num: String = body
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        pos += num.len();
        let num = num.trim_end_matches('.');
        if num.is_empty() {
            break;
        }
        refs.push(num.to_owned());
        // Byte vectors: ` TV1, TV5–TV8`.
        loop {
            let tail = &s[pos..];
            let sep = [" ", ", ", "–", "-", "/"]
                .iter()
                .find(|p| tail.starts_with(**p) && tail[p.len()..].starts_with("TV"));
            let Some(sep) = sep else { break };
            let range = *sep == "–" || *sep == "-";
            let digits: String = tail[sep.len() + 2..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if digits.is_empty() {
                break;
            }
            pos += sep.len() + 2 + digits.len();
            let n: u32 = digits.parse().unwrap_or(0);
            if range {
                let last = refs
                    .last()
                    .and_then(|r| r.strip_prefix("TV"))
                    .and_then(|d| d.parse::<u32>().ok())
                    .unwrap_or(n);
                refs.extend((last + 1..=n).map(|k| format!("TV{k}")));
            } else {
                refs.push(format!("TV{n}"));
            }
        }
        // Next § of the list.
        let tail = &s[pos..];
        match [", ", "/", " and ", "–", "-"]
            .iter()
            .find(|p| tail.starts_with(**p) && tail[p.len()..].starts_with('§'))
        {
            Some(p) => pos += p.len(),
            None => break,
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reference_lists() {
        let r = |l: &str| references(l, false);
        assert_eq!(
            r("//! Codec (spec §2.1, §2.2, §2.7)."),
            ["2.1", "2.2", "2.7"]
        );
        assert_eq!(
            r("Golden-vector (docs/site-to-site.md §14 TV1, TV5–TV8) tests"),
            ["14", "TV1", "TV5", "TV6", "TV7", "TV8"]
        );
        assert_eq!(r("Reference §0.1/§2.2: ABORT"), ["0.1", "2.2"]);
        assert_eq!(r("PROTOCOL.md §5 and (§3)"), Vec::<String>::new());
        assert_eq!(r("spec §5.3)."), ["5.3"]);
        assert_eq!(references("see §2.4, and PROTOCOL.md §8.2", true), ["2.4"]);
    }

    #[test]
    fn headings_are_anchors() {
        let a = anchors("# Title\n## 0. Intro\n## 0.1 Errors\n### 2.3 Handshake\n### TV5 — SEND\n");
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            ["0", "0.1", "2.3", "TV5"]
        );
    }

    /// The real check, so that `cargo test` catches a dangling reference as well.
    #[test]
    fn every_reference_in_the_repository_resolves() {
        let broken = broken_refs(&workspace_root()).unwrap();
        assert!(broken.is_empty(), "{broken:#?}");
    }

    #[test]
    fn msrv_rules() {
        let meta = serde_json::json!({
            "workspace_members": ["a 0.1.0", "b 0.1.0"],
            "packages": [
                {"id": "a 0.1.0", "name": "nifi-s2s-proto", "version": "0.1.0", "rust_version": "1.88"},
                {"id": "b 0.1.0", "name": "b", "version": "0.1.0", "rust_version": null},
                {"id": "c 1.0.0", "name": "c", "version": "1.0.0", "rust_version": "1.89"},
                {"id": "d 1.0.0", "name": "d", "version": "1.0.0", "rust_version": "1.70.0"},
            ]
        });
        let p = msrv_problems(&meta).unwrap();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("b: no rust-version"));
        assert!(p[1].contains("dependency c"));
    }
}
