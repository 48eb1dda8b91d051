//! The private PostgreSQL server: it answers on its socket, keeps its data across a stop and a
//! restart, and leaves nothing running or on disk once dropped.

use std::process::Command;

use vai_testenv::Postgres;

fn psql(url: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([url, "-XtAc", sql])
        .output()
        .expect("psql runs (it comes with the postgresql package scripts/pg installs)")
}

fn answer(url: &str, sql: &str) -> String {
    let out = psql(url, sql);
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_private_server_answers_keeps_its_data_and_leaves_nothing_behind() {
    let pg = Postgres::start().unwrap();
    let url = pg.url().to_string();
    assert!(url.contains(&pg.dir().display().to_string()), "{url}");
    // No TCP: the only way in is the socket in its directory.
    assert_eq!(answer(&url, "SHOW listen_addresses"), "");
    assert_eq!(answer(&url, "SELECT current_user"), "vai");
    answer(
        &url,
        "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)",
    );

    pg.stop().unwrap();
    assert!(
        !psql(&url, "SELECT 1").status.success(),
        "a stopped server answered"
    );
    pg.restart().unwrap();
    assert_eq!(answer(&url, "SELECT n FROM kept"), "42");

    let root = pg.dir().parent().unwrap().to_path_buf();
    let pid: i32 = std::fs::read_to_string(pg.dir().join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(pg);
    assert!(!root.exists(), "{} was left behind", root.display());
    // The postmaster is gone (not even a zombie of ours: it is the script's child).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        status.is_empty() || status.contains("State:\tZ"),
        "postmaster {pid} still runs: {status}"
    );
}
