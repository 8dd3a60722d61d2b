//! Two `veilig-bellen serve` instances behind one trunk, sharing their link sessions in one
//! PostgreSQL database (`[store] backend = "postgres"`, a throwaway cluster of
//! `support/postgres.rs`) and one attribute key file. The citizen starts and discloses a session
//! on instance A's website API (the IRMA server is the irmago stand-in); the trunk sends the call to
//! instance B, which verifies it with the citizen's attributes; the same code again, now to A, is
//! `used_code`. Each instance lists only its own calls.

use crate::support;

use crate::support::irmago_standin;
use crate::support::postgres::{PgCluster, PASSWORD};
use crate::support::serve_child::{Serving, Site};
use crate::support::serve_cli::{
    Setup, API_TOKEN, ARNHEM, ARNHEM_SITE as SITE, BSN, CITIZEN_BSN, CITIZEN_NAME, IRMA_TOKEN, NAME,
};
use support::agent::AGENT_PASSWORD;
use support::pcap::{dtmf_call_pcap, DtmfPcapConfig};
use support::ports;
use support::sipp::{Sipp, TrunkCall};

use std::path::{Path, PathBuf};
use std::time::Duration;

use irmago_standin::IrmagoStandin;
use serde_json::{json, Value};
use veilig_bellen::store::AttributeKey;

/// Instance `instance` of one install: its own ports and data directory, the shared database, the
/// shared key file, the IRMA server at `irma_url`.
fn write_config(
    setup: &Setup,
    instance: &str,
    irma_url: &str,
    db_url: &str,
    key_file: &Path,
) -> PathBuf {
    let password_file = setup.dir.path().join("db-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
    let text = format!(
        r#"data_dir = "{data}"
key_file = "{key}"
api_token = "{API_TOKEN}"
[store]
backend = "postgres"
url = "{db_url}"
password_file = "{password}"
instance = "{instance}"
{tables}"#,
        data = setup.dir.path().join("data").display(),
        key = key_file.display(),
        password = password_file.display(),
        tables = setup.arnhem_tables(irma_url, AGENT_PASSWORD),
    );
    setup.write_config(&text)
}

/// A trunk call from `caller` to Arnhem keying `code` (RFC 4733) at `site`, until its agents' list
/// shows it `waiting`. `None` when sipp is missing (test skipped).
async fn call_with_code(site: &Site, caller: &str, code: &str) -> Option<(Sipp, Value)> {
    let mut call = TrunkCall::new(caller);
    call.called = ARNHEM.to_owned();
    call.pcap = Some(dtmf_call_pcap(code, &DtmfPcapConfig::default()).expect("pcap"));
    call.wait_limit = Some(Duration::from_secs(30));
    call.limit = Some(Duration::from_secs(35));
    site.call_until_waiting(&call).await
}

/// The citizen starts a session on `site`'s website API and discloses name and BSN in the Yivi
/// app (the stand-in); the site tells the website `done`. The link code.
async fn disclosed_code(site: &Site, standin: &IrmagoStandin) -> String {
    let session = site.started_arnhem_session(standin).await;
    let token = session["token"].as_str().expect("token").to_owned();
    let code = irmago_standin::disclose_arnhem(standin, &session);
    assert_eq!(site.session_status(&token, SITE).await["status"], "done");
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_disclosed_on_one_instance_verifies_a_call_to_the_other_once() {
    let cluster = PgCluster::start();
    cluster.create_database("veilig_bellen").await;
    let db_url = cluster.url("veilig_bellen");
    let standin = IrmagoStandin::start(ports::port(), IRMA_TOKEN).await;
    let keys = tempfile::tempdir().expect("key dir");
    AttributeKey::load_or_create(keys.path()).expect("the shared key");
    let key_file = keys.path().join("attribute.key");

    let (setup_a, setup_b) = (Setup::new(), Setup::new());
    let config_a = write_config(&setup_a, "vb-a", &standin.url, &db_url, &key_file);
    let config_b = write_config(&setup_b, "vb-b", &standin.url, &db_url, &key_file);
    let serving_a = Serving::start(
        &config_a,
        true,
        "info",
        setup_a.dir.path().join("serve.stderr"),
        "serve A",
    )
    .await;
    let serving_b = Serving::start(
        &config_b,
        true,
        "info",
        setup_b.dir.path().join("serve.stderr"),
        "serve B",
    )
    .await;
    assert!(
        serving_b
            .stdout()
            .contains("PostgreSQL, shared; this instance is \"vb-b\""),
        "{}",
        serving_b.stdout()
    );
    let (site_a, site_b) = (Site::new(&setup_a), Site::new(&setup_b));

    // The citizen starts on A's website API and discloses in the Yivi app.
    let code = disclosed_code(&site_a, &standin).await;

    // The trunk sends the call to B: verified with the attributes A's session cached.
    let Some((sipp, waiting)) = call_with_code(&site_b, "+31612345001", &code).await else {
        return;
    };
    assert_eq!(waiting["verified"], true, "{waiting:#}");
    assert_eq!(
        waiting["attributes"],
        json!([
            {"id": NAME, "label": "Naam", "value": CITIZEN_NAME},
            {"id": BSN, "label": "BSN", "value": CITIZEN_BSN},
        ]),
        "{waiting:#}"
    );
    // Each instance lists its own calls: A never heard of this one.
    assert!(
        site_a.calls().await.is_empty(),
        "A's agents' list shows only A's calls"
    );
    site_b.hang_up(sipp, &waiting["id"]).await;

    // The same code again, now to A: used.
    let Some((sipp, waiting)) = call_with_code(&site_a, "+31612345002", &code).await else {
        return;
    };
    assert_eq!(waiting["verified"], false, "{waiting:#}");
    assert_eq!(waiting["reason"], "used_code", "{waiting:#}");
    assert_eq!(waiting["attributes"], json!([]), "{waiting:#}");
    site_a.hang_up(sipp, &waiting["id"]).await;

    // Neither logged the code or the attributes.
    for (name, serving) in [("A", &serving_a), ("B", &serving_b)] {
        let stderr = serving.stderr();
        for secret in [code.as_str(), CITIZEN_NAME, CITIZEN_BSN, PASSWORD] {
            assert!(
                !stderr.contains(secret),
                "instance {name} logged personal data or a secret"
            );
        }
    }
}

/// A slow database: the code's row is locked by another transaction when the call's lookup wants
/// it, and the caller hangs up right after keying the code. The call is listed ended *verified*
/// (without attributes) once the lookup gets through — not ended unclassified — and the code is
/// spent on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_while_the_lookup_waits_is_listed_with_its_verdict() {
    let cluster = PgCluster::start();
    cluster.create_database("veilig_bellen").await;
    let db_url = cluster.url("veilig_bellen");
    let standin = IrmagoStandin::start(ports::port(), IRMA_TOKEN).await;
    let keys = tempfile::tempdir().expect("key dir");
    AttributeKey::load_or_create(keys.path()).expect("the key");
    let key_file = keys.path().join("attribute.key");
    let setup = Setup::new();
    let config = write_config(&setup, "vb-a", &standin.url, &db_url, &key_file);
    let serving = Serving::start(
        &config,
        true,
        "info",
        setup.dir.path().join("serve.stderr"),
        "serve",
    )
    .await;
    let site = Site::new(&setup);
    let code = disclosed_code(&site, &standin).await;

    // Another transaction holds the code's row.
    let mut db = cluster.client("veilig_bellen").await;
    let lock = db.transaction().await.expect("a transaction");
    let locked = lock
        .query(
            "SELECT 1 FROM link_sessions WHERE code = $1 FOR UPDATE",
            &[&code],
        )
        .await
        .expect("the row lock");
    assert_eq!(locked.len(), 1, "the code's row is there");

    // The caller keys the code (RFC 4733) and hangs up 300 ms after the recording ends.
    let pcap = DtmfPcapConfig::default();
    let keyed = pcap.lead_in + 8 * pcap.digit_duration + 7 * pcap.gap + pcap.tail;
    let caller = "+31612345003";
    let mut call = TrunkCall::new(caller);
    call.called = ARNHEM.to_owned();
    call.pcap = Some(dtmf_call_pcap(&code, &pcap).expect("pcap"));
    call.hangup_after = Some(keyed + Duration::from_millis(300));
    let placed = tokio::time::Instant::now();
    let Some(sipp) = Sipp::start(site.sip, &call) else {
        return;
    };
    // The caller hangs up (about 300 ms after the code); half a second later the lookup, still
    // waiting for the row, gets it.
    tokio::time::sleep_until(placed + keyed + Duration::from_millis(800)).await;
    lock.rollback().await.expect("rollback");
    if let Err(e) = sipp.finish().await {
        panic!("the caller's call did not end cleanly: {e}");
    }

    let ended = site
        .wait_for_call(Duration::from_secs(10), |c| c["state"] == "ended")
        .await;
    // The only call so far; an ended call's number is purged with its attributes.
    assert_eq!(site.calls().await.len(), 1);
    assert_eq!(ended["verified"], true, "{ended:#}\n{}", serving.stderr());
    assert_eq!(ended["reason"], Value::Null, "{ended:#}");
    assert_eq!(ended["attributes"], json!([]), "{ended:#}");

    // The code went to that call.
    let Some((sipp, waiting)) = call_with_code(&site, "+31612345004", &code).await else {
        return;
    };
    assert_eq!(waiting["reason"], "used_code", "{waiting:#}");
    site.hang_up(sipp, &waiting["id"]).await;
}
