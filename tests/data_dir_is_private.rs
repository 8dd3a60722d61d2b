//! The data directory holds the sealed attributes, the attribute key and the audit log: it is
//! created `0700` (a loose existing one is tightened), and every file in it is `0600` — no other
//! user on the machine reads citizens' data, whatever the umask.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use support::server;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_its_files_are_owner_only() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("nested").join("data");
    let first = data.clone();
    let srv = server::start(1, |c| c.data_dir = first).await;
    // A session writes the store.
    let _ = srv.new_code().await;
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    let mut files = 0;
    for entry in std::fs::read_dir(&data).expect("read data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            files += 1;
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    assert!(files >= 2, "store and key file are there");
    srv.shutdown().await;

    // An existing directory others may read is tightened at start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let again = data.clone();
    let srv = server::start(1, |c| c.data_dir = again).await;
    assert_eq!(mode(&data), 0o700);
    srv.shutdown().await;
}
