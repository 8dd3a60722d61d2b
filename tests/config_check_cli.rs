//! `veilig-bellen config check FILE` as an operator runs it: the shipped example
//! (`deploy/veilig-bellen.toml`) is accepted; a broken file exits 2 with one line per problem that
//! names the file, the line and the key; an environment override is checked like the file; a hash
//! from `agent hash-password` is one the checker accepts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_veilig-bellen");

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/veilig-bellen.toml")
}

/// The binary with `args`, no `VEILIG_BELLEN_*` from the test's own environment, plus `env`;
/// `stdin` written to it. Killed after 60 s.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("VEILIG_BELLEN_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("the binary starts");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("writing stdin");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("polling the child").is_some() {
            return child.wait_with_output().expect("child output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "`veilig-bellen {}` did not finish within 60 s",
                args.join(" ")
            );
        }
        // The back-off of this bounded wait for the child's exit.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
}

#[test]
fn the_shipped_example_config_checks_ok() {
    let example = example();
    let out = run(&["config", "check", example.to_str().unwrap()], &[], "");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok: 2 tenants, 2 agents\n");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn a_broken_config_exits_2_naming_every_key_and_line() {
    let original = std::fs::read_to_string(example()).unwrap();
    let broken = original
        .replacen("[http]\n", "[http]\nport = 8080\n", 1)
        .replacen(
            "numbers = [\"+31243299999\"]",
            "numbers = [\"024-3299999\"]",
            1,
        )
        .replacen(
            "https://irma.gemeente.example.nl",
            "http://irma.gemeente.example.nl",
            1,
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, &broken).unwrap();
    let file = path.to_str().unwrap();

    let out = run(&["config", "check", file], &[], "");
    assert_eq!(out.status.code(), Some(2), "stdout: {}", text(&out.stdout));
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: {}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    let port_line = line_of(&broken, "port = 8080");
    assert!(
        stderr.contains(&format!("{file}:{port_line}:1: unknown key `http.port`")),
        "{stderr}"
    );
    let number_line = line_of(&broken, "024-3299999");
    assert!(
        stderr.contains(&format!("{file}:{number_line}:"))
            && stderr.contains("`tenants[1].numbers[0]`"),
        "{stderr}"
    );
    let url_line = line_of(&broken, "http://irma.gemeente");
    assert!(
        stderr.contains(&format!("{file}:{url_line}:")) && stderr.contains("`irma.url`"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        4,
        "three problems and a count: {stderr}"
    );
}

#[test]
fn an_environment_override_is_checked_and_named() {
    let example = example();
    let file = example.to_str().unwrap();
    let out = run(
        &["config", "check", file],
        &[("VEILIG_BELLEN_HTTP__LISTEN", "everywhere:8080")],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("VEILIG_BELLEN_HTTP__LISTEN: `http.listen`:"),
        "{stderr}"
    );
    let out = run(
        &["config", "check", file],
        &[("VEILIG_BELLEN_HTTP__LISTEN", "127.0.0.1:18080")],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_hash_from_hash_password_is_accepted_by_config_check() {
    let out = run(&["agent", "hash-password"], &[], "een lang wachtwoord\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let hash = text(&out.stdout);
    let hash = hash.trim_end();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains("een lang wachtwoord"));

    let original = std::fs::read_to_string(example()).unwrap();
    let old = original
        .lines()
        .find(|l| l.starts_with("password_hash = "))
        .unwrap();
    let with_new = original.replacen(old, &format!("password_hash = \"{hash}\""), 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new-hash.toml");
    std::fs::write(&path, with_new).unwrap();
    let out = run(&["config", "check", path.to_str().unwrap()], &[], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let empty = run(&["agent", "hash-password"], &[], "");
    assert_eq!(empty.status.code(), Some(2), "no password, no hash");
}
