//! An operator plugs a municipality's own exchange in: `veilig-bellen tenant exchange-key` prints a
//! key and the `[[tenants.exchange_keys]]` table for the config, which `config check` accepts; a
//! bad entry (a hash that is not one, an extension with a space) is reported with file, line,
//! column and key, and exits 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_veilig-bellen");

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/veilig-bellen.toml");
    std::fs::read_to_string(path).expect("the example config")
}

/// The binary with `args` and no `VEILIG_BELLEN_*` variables of the test's own.
fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("VEILIG_BELLEN_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `config` into `dir` and runs `config check` on it.
fn check(dir: &Path, config: &str) -> (Output, PathBuf) {
    let path = dir.join("vb.toml");
    std::fs::write(&path, config).expect("writing the config");
    (run(&["config", "check", path.to_str().unwrap()]), path)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
}

#[test]
fn a_printed_key_table_checks_ok_and_a_bad_one_is_located() {
    let printed = run(&["tenant", "exchange-key", "--name", "asterisk-1"]);
    assert_eq!(printed.status.code(), Some(0), "{}", text(&printed.stderr));
    let printed = text(&printed.stdout);
    let (key, table) = printed.split_once('\n').expect("the key on its own line");
    assert!(key.starts_with("vbx_") && key.len() >= 4 + 43, "{key:?}");
    assert!(!table.contains(key), "only the hash goes into the config");
    assert!(table.contains("[[tenants.exchange_keys]]"), "{printed}");

    // Appended to the example, the table belongs to its last tenant.
    let dir = tempfile::tempdir().unwrap();
    let good = format!("{}\n{table}", example());
    let (out, _) = check(dir.path(), &good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The same key for a second tenant would make the tenant ambiguous.
    let hash_line = table
        .lines()
        .find(|l| l.starts_with("key_hash"))
        .expect("a key_hash line");
    let twice = good.replacen(
        "[[tenants]]\nid = \"nijmegen\"",
        &format!("[[tenants.exchange_keys]]\nname = \"copy\"\n{hash_line}\n\n[[tenants]]\nid = \"nijmegen\""),
        1,
    );
    let (out, _) = check(dir.path(), &twice);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("`tenants[1].exchange_keys[0].key_hash`: the same key is configured twice"),
        "{}",
        text(&out.stderr)
    );

    let bad = format!(
        "{}\n[[tenants.exchange_keys]]\nname = \"asterisk-2\"\nkey_hash = \"md5:0123\"\n",
        example()
    )
    .replacen("# extension = \"201\"", "extension = \"2 01\"", 1);
    let (out, path) = check(dir.path(), &bad);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let hash_line = line_of(&bad, "key_hash = \"md5:0123\"");
    assert!(
        stderr.contains(&format!(
            "{}:{hash_line}:12: `tenants[1].exchange_keys[0].key_hash`: must be `sha256:`",
            path.display()
        )),
        "{stderr}"
    );
    let extension_line = line_of(&bad, "extension = \"2 01\"");
    assert!(
        stderr.contains(&format!(
            "{}:{extension_line}:13: `tenants[0].agents[0].extension`: must not contain spaces",
            path.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.contains(": `tenants[")).count(),
        2,
        "nothing else is wrong: {stderr}"
    );

    let refused = run(&["tenant", "exchange-key", "--name", "two words"]);
    assert_eq!(refused.status.code(), Some(2));
}
