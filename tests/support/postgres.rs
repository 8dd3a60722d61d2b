//! Test support: a private, throwaway PostgreSQL cluster for the tests of the PostgreSQL session
//! store. `initdb` and `pg_ctl` from Debian's `postgresql` package (`/usr/lib/postgresql/*/bin/`,
//! the newest there) make a cluster in a temp dir, listening on 127.0.0.1 only on a test port and
//! on a Unix socket in that dir, with password (SCRAM) logins for the user `vb`. PostgreSQL refuses
//! to run as root: as root the cluster runs as the `postgres` user (`runuser -u postgres --`), its
//! dir handed to that user. Stopped (`pg_ctl stop -m immediate`) on drop.
//!
//! Missing server binaries fail the test, naming the package: CI installs it
//! (`scripts/install-test-deps.sh`), and a store test that passes without a database proves
//! nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::ports;

/// The superuser of the test cluster and its password.
pub const USER: &str = "vb";
pub const PASSWORD: &str = "vb-test-password-1";

/// A running throwaway cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Run its programs as the `postgres` user (we are root).
    as_postgres: bool,
    pub port: u16,
    running: bool,
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `pg_ctl`.
fn server_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: \
             install Debian's `postgresql` package (apt-get install -y postgresql; \
             scripts/install-test-deps.sh does)"
        ),
    }
}

/// The uid and gid of `user` from /etc/passwd.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == user).then_some(())?;
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read temp dir") {
            chown_tree(&entry.expect("dir entry").path(), uid, gid);
        }
    }
}

impl PgCluster {
    /// `initdb` and start a new cluster; waits until it accepts connections (`pg_ctl -w`).
    pub fn start() -> PgCluster {
        let bin = server_bin();
        let dir = tempfile::Builder::new()
            .prefix("vb-pg-")
            .tempdir()
            .expect("temp dir");
        let as_postgres = rustix::process::geteuid().is_root();
        std::fs::write(dir.path().join("pwfile"), format!("{PASSWORD}\n")).expect("pwfile");
        if as_postgres {
            let (uid, gid) = ids_of("postgres").unwrap_or_else(|| {
                panic!(
                    "running as root, and there is no `postgres` user to run PostgreSQL as: \
                     install Debian's `postgresql` package"
                )
            });
            chown_tree(dir.path(), uid, gid);
        }
        let mut cluster = PgCluster {
            dir,
            bin,
            as_postgres,
            port: ports::port(),
            running: false,
        };
        let data = cluster.data_dir();
        let pwfile = cluster.dir.path().join("pwfile");
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "--auth=scram-sha-256".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=100",
            cluster.port,
            cluster.dir.path().display()
        );
        let log = cluster.dir.path().join("postgres.log");
        let out = cluster.output(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        cluster.running = true;
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn output(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&path);
            cmd
        } else {
            Command::new(&path)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", path.display()))
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let out = self.output(program, args);
        assert!(
            out.status.success(),
            "{program} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A connection URL for database `db` as [`USER`], without the password.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A connection URL for database `db` with the password in it.
    pub fn url_with_password(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (on the `postgres` database, as [`USER`]).
    pub async fn create_database(&self, name: &str) {
        let client = self.client("postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    }

    /// A plain client on database `db`, its connection driven by a task.
    pub async fn client(&self, db: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.url_with_password(db), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Stops the server now (immediate shutdown: like a crash of the database host).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let data = self.data_dir();
        let out = self.output(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        assert!(
            out.status.success() || std::thread::panicking(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
