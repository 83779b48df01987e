//! The PostgreSQL stand-in is a real server: the role `ferry` connects over
//! TCP with its password (and, with TLS, only with its client certificate),
//! its data outlives a restart and a SIGKILL, and a paused server answers
//! nothing until resumed. The client here is libpq's psql, not ferry.

use ferry_standin::pki::Pki;
use ferry_standin::postgres::Postgres;
use std::process::Command;
use std::time::{Duration, Instant};

/// `sql` run by psql at `url` as ferry would connect (TCP, the role
/// `ferry`, `password`), giving up on connecting after 2 s.
fn psql_as_ferry(url: &str, password: &str, sql: &str) -> Result<String, String> {
    let output = Command::new(Postgres::bin().join("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "2")
        // No client certificate from ~/.postgresql unless the URL names one.
        .env("PGSSLCERT", NO_FILE)
        .env("PGSSLKEY", NO_FILE)
        .output()
        .map_err(|err| format!("run psql: {err}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// A path that names no file, for PGSSLCERT and PGSSLKEY.
const NO_FILE: &str = "/nonexistent/ferry-no-client-certificate";

#[test]
fn ferry_connects_with_its_password_and_its_data_outlives_a_restart_and_a_kill() {
    let postgres = Postgres::start();
    let url = postgres.create_database("ferry_state");
    assert!(!url.contains(postgres.password()), "the URL carries no password: {url}");
    assert_eq!(url, format!("postgres://ferry@127.0.0.1:{}/ferry_state", postgres.port()));

    let me = psql_as_ferry(&url, postgres.password(), "SELECT current_user || ' ' || current_database()").expect("connect");
    assert_eq!(me, "ferry ferry_state");
    let wrong = psql_as_ferry(&url, "not-the-password", "SELECT 1").expect_err("a wrong password is refused");
    assert!(wrong.contains("password authentication failed"), "{wrong}");

    // ferry owns its database: it may create its tables.
    psql_as_ferry(&url, postgres.password(), "CREATE TABLE cursor (id int PRIMARY KEY, at text); INSERT INTO cursor VALUES (1, 'a')")
        .expect("create a table as ferry");

    let port = postgres.port();
    postgres.stop();
    assert!(psql_as_ferry(&url, postgres.password(), "SELECT 1").is_err(), "a stopped server answers nothing");
    postgres.start_again();
    assert_eq!(postgres.port(), port);
    assert_eq!(psql_as_ferry(&url, postgres.password(), "SELECT at FROM cursor").expect("after a restart"), "a");

    psql_as_ferry(&url, postgres.password(), "UPDATE cursor SET at = 'b'").expect("update");
    postgres.kill();
    postgres.start_again();
    assert_eq!(postgres.sql("ferry_state", "SELECT at FROM cursor"), "b", "a committed write survives SIGKILL");
    assert!(postgres.log().contains("database system was interrupted"), "the server recovered: {}", postgres.log());
}

#[test]
fn a_paused_server_answers_nothing_until_resumed() {
    let postgres = Postgres::start();
    let url = postgres.create_database("paused");
    postgres.pause();
    let started = Instant::now();
    let frozen = psql_as_ferry(&url, postgres.password(), "SELECT 1").expect_err("a paused server does not answer");
    assert!(started.elapsed() >= Duration::from_secs(1), "psql gave up at once ({frozen}): the server was not frozen");
    postgres.resume();
    assert_eq!(psql_as_ferry(&url, postgres.password(), "SELECT 1").expect("after resume"), "1");
}

/// An open connection is frozen too, as behind a dropped network: the
/// backend serving it stops with the server (each backend is a process
/// group of its own, so signalling the server's group alone would miss it).
#[test]
fn a_paused_server_freezes_open_connections_too() {
    use std::io::{BufRead, Write};
    let postgres = Postgres::start();
    let url = postgres.create_database("open");
    let mut psql = Command::new(Postgres::bin().join("psql"))
        .args(["-X", "-q", "-A", "-t", "-d", &url])
        .env("PGPASSWORD", postgres.password())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run psql");
    let mut stdin = psql.stdin.take().expect("stdin");
    let stdout = std::io::BufReader::new(psql.stdout.take().expect("stdout"));
    let (lines, answers) = std::sync::mpsc::channel();
    std::thread::spawn(move || stdout.lines().map_while(Result::ok).for_each(|line| drop(lines.send(line))));
    writeln!(stdin, "SELECT 1;").expect("ask");
    assert_eq!(answers.recv_timeout(Duration::from_secs(10)).expect("an answer"), "1");

    postgres.pause();
    writeln!(stdin, "SELECT 2;").expect("ask");
    let frozen = answers.recv_timeout(Duration::from_millis(1500));
    postgres.resume();
    assert!(frozen.is_err(), "the open connection answered while the server was paused: {frozen:?}");
    assert_eq!(answers.recv_timeout(Duration::from_secs(10)).expect("the answer after resume"), "2");
    drop(stdin);
    let _ = psql.wait();
}

#[test]
fn with_tls_ferry_needs_its_client_certificate() {
    let pki = Pki::generate("postgres").expect("a PKI");
    let postgres = Postgres::start_tls(&pki);
    let url = postgres.create_database("ferry_tls");
    let files = postgres.client_files().expect("the client's files");
    for (param, file) in [("sslrootcert", &files.ca), ("sslcert", &files.cert), ("sslkey", &files.key)] {
        assert!(url.contains(&format!("{param}={}", file.display())), "{url}");
        assert!(file.is_file(), "{}", file.display());
    }
    assert!(url.contains("sslmode=verify-full"), "{url}");

    let ssl = psql_as_ferry(&url, postgres.password(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    assert_eq!(ssl.expect("TLS with the client certificate connects"), "t");

    let base = postgres.url_without_tls("ferry_tls");
    let no_certificate = format!("{base}?sslmode=verify-full&sslrootcert={}", files.ca.display());
    let refused = psql_as_ferry(&no_certificate, postgres.password(), "SELECT 1").expect_err("no client certificate");
    assert!(refused.contains("certificate"), "{refused}");
    let plain = psql_as_ferry(&format!("{base}?sslmode=disable"), postgres.password(), "SELECT 1").expect_err("no TLS");
    assert!(plain.contains("no pg_hba.conf entry"), "{plain}");

    // Another CA's client certificate with ferry's name is refused too.
    let other = Pki::generate("other").expect("another PKI");
    let dir = tempfile::tempdir().expect("a folder");
    let other_files = other.write(dir.path()).expect("write the other PKI");
    let foreign = format!(
        "{base}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        files.ca.display(),
        other_files.client_cert.display(),
        other_files.client_key.display()
    );
    assert!(psql_as_ferry(&foreign, postgres.password(), "SELECT 1").is_err(), "a certificate of another CA");
}

#[test]
fn the_superuser_sql_helper_reports_what_the_database_refuses() {
    let postgres = Postgres::start();
    postgres.create_database("checks");
    postgres.sql("checks", "CREATE TABLE lease (epoch bigint CHECK (epoch > 0))");
    let refused = postgres.try_sql("checks", "INSERT INTO lease VALUES (0)").expect_err("the check constraint");
    assert!(refused.contains("violates check constraint"), "{refused}");
    assert_eq!(postgres.sql("checks", "INSERT INTO lease VALUES (3); SELECT epoch FROM lease"), "3");
}
