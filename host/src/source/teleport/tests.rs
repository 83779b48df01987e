//! The Teleport client against the stand-in Auth Service, over real sockets
//! and mutual TLS: paging, session streams, export, locks, identity files,
//! rotation, TLS routing and refusals.

use super::connect::{ClientTls, ConnectOptions, IdentityWatcher, audit_log_client, auth_client, connect};
use super::identity::{API_DOMAIN, Credentials, IdentityFile, Route};
use base64::Engine as _;
use ferry_proto::auditlog::{
    EventUnstructured, ExportUnstructuredEventsRequest, GetEventExportChunksRequest, GetUnstructuredEventsRequest, Order,
    StreamUnstructuredSessionEventsRequest,
};
use ferry_proto::types::{LockSpecV2, LockTarget, LockV2, Metadata};
use ferry_standin::teleport::{Fault, IdentitySpec, Method, StandInOptions, TeleportStandIn, Validity, fixture_events, fixture_sessions};
use prost_types::Timestamp;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::Channel;

const SESSION_ID: &str = "516965e5-e6ef-11e9-9d5b-42010a80002b";

struct Setup {
    standin: TeleportStandIn,
    _dir: tempfile::TempDir,
    identity: PathBuf,
    watcher: IdentityWatcher,
}

async fn setup(options: StandInOptions) -> Setup {
    let standin = TeleportStandIn::start(options).await.expect("stand-in starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = dir.path().join("auth.pem");
    standin.write_identity(&identity).expect("identity written");
    let watcher = IdentityWatcher::start(Credentials::IdentityFile(identity.clone()), Route::Direct, None).expect("identity loads");
    Setup { standin, _dir: dir, identity, watcher }
}

impl Setup {
    async fn channel(&self) -> Channel {
        connect(&self.standin.address(), &self.watcher.client_tls(), &ConnectOptions::default()).await.expect("connects")
    }
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

/// 1970 to 2100: the whole fixture log.
fn everything(limit: i32, start_key: String) -> GetUnstructuredEventsRequest {
    GetUnstructuredEventsRequest {
        namespace: "default".into(),
        start_date: at(0),
        end_date: at(4_102_444_800),
        event_types: vec![],
        limit,
        start_key,
        order: Order::Ascending as i32,
    }
}

async fn page_all(channel: Channel, request: GetUnstructuredEventsRequest) -> (Vec<EventUnstructured>, usize) {
    let mut client = audit_log_client(channel);
    let (mut events, mut pages, mut key) = (Vec::new(), 0, String::new());
    loop {
        let page = client
            .get_unstructured_events(GetUnstructuredEventsRequest { start_key: key, ..request.clone() })
            .await
            .expect("page")
            .into_inner();
        pages += 1;
        events.extend(page.items);
        if page.last_key.is_empty() {
            return (events, pages);
        }
        key = page.last_key;
    }
}

fn json_of(event: &EventUnstructured) -> Value {
    let fields = event.unstructured.as_ref().expect("unstructured");
    serde_json::from_slice(&fields.to_json_bytes().expect("a well-formed Struct")).expect("JSON")
}

fn time_of(json: &Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(json["time"].as_str().expect("time")).expect("rfc3339")
}

#[tokio::test]
async fn every_fixture_event_arrives_once_in_time_order_by_pages() {
    let setup = setup(StandInOptions::default()).await;
    let (events, pages) = page_all(setup.channel().await, everything(20, String::new())).await;

    let mut expected = fixture_events();
    expected.sort_by_key(time_of); // stable: ties keep file order
    assert_eq!(events.len(), 183);
    assert_eq!(pages, 10, "9 full pages of 20, then 3 events");
    let got: Vec<Value> = events.iter().map(json_of).collect();
    assert_eq!(got, expected, "every event, each once, oldest first, as JSON");
    assert!(events.iter().all(|event| !event.id.is_empty() && !event.r#type.is_empty()));
    let calls = setup.standin.calls();
    assert_eq!(calls.len(), 10);
    assert!(
        calls
            .iter()
            .all(|call| call.method == Method::GetUnstructuredEvents && call.peer.as_ref().is_some_and(|peer| peer.common_name == "ferry"))
    );
}

#[tokio::test]
async fn a_full_last_page_is_followed_by_an_empty_one_and_windows_and_types_filter() {
    let setup = setup(StandInOptions::default()).await;
    let (events, pages) = page_all(setup.channel().await, everything(61, String::new())).await;
    assert_eq!((events.len(), pages), (183, 4), "three full pages and an empty last one");

    let mut client = audit_log_client(setup.channel().await);
    let logins =
        GetUnstructuredEventsRequest { event_types: vec!["user.login".into(), "session.end".into()], ..everything(100, String::new()) };
    let page = client.get_unstructured_events(logins).await.expect("page").into_inner();
    assert_eq!(page.items.len(), 7);
    assert!(page.items.iter().all(|event| event.r#type == "user.login" || event.r#type == "session.end"));

    // 2019-04-22 only: [start, end) in UTC.
    let day = GetUnstructuredEventsRequest { start_date: at(1_555_891_200), end_date: at(1_555_977_600), ..everything(100, String::new()) };
    let page = client.get_unstructured_events(day).await.expect("page").into_inner();
    assert!(!page.items.is_empty());
    assert!(page.items.iter().all(|event| json_of(event)["time"].as_str().is_some_and(|time| time.starts_with("2019-04-22"))));

    let bad_key = client.get_unstructured_events(everything(10, "garbage".into())).await.expect_err("foreign key");
    assert_eq!(bad_key.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn a_session_streams_from_zero_and_from_an_index_with_print_data() {
    let setup = setup(StandInOptions::default()).await;
    let mut client = audit_log_client(setup.channel().await);
    let stream = |start_index| StreamUnstructuredSessionEventsRequest { session_id: SESSION_ID.into(), start_index };

    let mut all = Vec::new();
    let mut events = client.stream_unstructured_session_events(stream(0)).await.expect("stream").into_inner();
    while let Some(event) = events.message().await.expect("event") {
        all.push(event);
    }
    assert_eq!(all.len(), 160);
    assert_eq!(all.iter().map(|event| event.index).collect::<Vec<_>>(), (0..160).collect::<Vec<_>>());
    let prints: Vec<Value> = all.iter().filter(|event| event.r#type == "print").map(json_of).collect();
    assert_eq!(prints.len(), 156);
    for print in &prints {
        let data = base64::engine::general_purpose::STANDARD.decode(print["data"].as_str().expect("data")).expect("base64");
        assert_eq!(data.len() as u64, print["bytes"].as_u64().expect("bytes"));
    }
    let original = &fixture_sessions()[SESSION_ID];
    assert_eq!(json_of(&all[0]), original[0], "non-print events are served as recorded");

    let mut from_100 = Vec::new();
    let mut events = client.stream_unstructured_session_events(stream(100)).await.expect("stream").into_inner();
    while let Some(event) = events.message().await.expect("event") {
        from_100.push(event.index);
    }
    assert_eq!(from_100, (100..160).collect::<Vec<_>>(), "events whose index is at least start_index");

    let missing = client
        .stream_unstructured_session_events(StreamUnstructuredSessionEventsRequest { session_id: "nope".into(), start_index: 0 })
        .await;
    assert_eq!(missing.expect_err("unknown session").code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn upsert_lock_is_recorded_as_sent() {
    let setup = setup(StandInOptions::default()).await;
    let mut client = auth_client(setup.channel().await);
    let lock = LockV2 {
        kind: "lock".into(),
        sub_kind: String::new(),
        version: "v2".into(),
        metadata: Some(Metadata { name: "event-handler-auto-lock-bob-root".into() }),
        spec: Some(LockSpecV2 {
            target: Some(LockTarget { user: "bob".into(), role: String::new(), login: "root".into() }),
            message: "User is locked due to too many failed login attempts".into(),
            expires: at(1_900_000_000),
        }),
    };
    client.upsert_lock(lock.clone()).await.expect("lock upserted");
    assert_eq!(setup.standin.locks(), vec![lock]);

    let nameless = LockV2 { metadata: None, ..LockV2::default() };
    assert_eq!(client.upsert_lock(nameless).await.expect_err("no name").code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn the_export_api_lists_chunks_and_resumes_inside_one() {
    let setup = setup(StandInOptions { chunk_size: 4, ..StandInOptions::default() }).await;
    let mut client = audit_log_client(setup.channel().await);
    let date = at(1_555_934_400); // 2019-04-22, noon UTC
    let mut names = Vec::new();
    let mut chunks = client.get_event_export_chunks(GetEventExportChunksRequest { date }).await.expect("chunks").into_inner();
    while let Some(chunk) = chunks.message().await.expect("chunk") {
        names.push(chunk.chunk);
    }
    let on_that_day =
        fixture_events().iter().filter(|event| event["time"].as_str().is_some_and(|time| time.starts_with("2019-04-22"))).count();
    assert_eq!(names.len(), on_that_day.div_ceil(4));

    let mut exported = 0;
    for name in &names {
        let request = ExportUnstructuredEventsRequest { date, chunk: name.clone(), cursor: String::new() };
        let mut events = client.export_unstructured_events(request).await.expect("export").into_inner();
        while let Some(item) = events.message().await.expect("item") {
            assert!(item.event.is_some() && !item.cursor.is_empty());
            exported += 1;
        }
    }
    assert_eq!(exported, on_that_day);

    let first = names.last().expect("a chunk").clone();
    let resume = ExportUnstructuredEventsRequest { date, chunk: first, cursor: "2".into() };
    let mut events = client.export_unstructured_events(resume).await.expect("export").into_inner();
    let mut cursors = Vec::new();
    while let Some(item) = events.message().await.expect("item") {
        cursors.push(item.cursor);
    }
    assert_eq!(cursors, vec!["3", "4"], "resumes after the second event of a full chunk");
}

#[tokio::test]
async fn without_the_export_api_both_export_methods_are_unimplemented() {
    let setup = setup(StandInOptions { export_api: false, ..StandInOptions::default() }).await;
    let mut client = audit_log_client(setup.channel().await);
    let probe = client.get_event_export_chunks(GetEventExportChunksRequest { date: at(1_555_934_400) }).await;
    assert_eq!(probe.expect_err("unimplemented").code(), tonic::Code::Unimplemented);
    let export =
        client.export_unstructured_events(ExportUnstructuredEventsRequest { date: at(0), chunk: "x".into(), cursor: String::new() }).await;
    assert_eq!(export.expect_err("unimplemented").code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn injected_faults_fail_calls_and_drop_streams() {
    let setup = setup(StandInOptions::default()).await;
    let mut client = audit_log_client(setup.channel().await);
    setup.standin.fail_next(Method::GetUnstructuredEvents, 2);
    setup.standin.inject(Method::GetUnstructuredEvents, Fault::Delay(Duration::from_millis(20)));
    for _ in 0..2 {
        let err = client.get_unstructured_events(everything(5, String::new())).await.expect_err("unavailable");
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }
    assert_eq!(client.get_unstructured_events(everything(5, String::new())).await.expect("slow but fine").into_inner().items.len(), 5);

    setup.standin.inject(Method::StreamUnstructuredSessionEvents, Fault::DropStreamAfter(10));
    let request = StreamUnstructuredSessionEventsRequest { session_id: SESSION_ID.into(), start_index: 0 };
    let mut events = client.stream_unstructured_session_events(request).await.expect("stream").into_inner();
    let mut received = 0;
    let status = loop {
        match events.message().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the stream ended cleanly"),
            Err(status) => break status,
        }
    };
    assert_eq!((received, status.code()), (10, tonic::Code::Unavailable));

    setup
        .standin
        .inject(Method::Any, Fault::Status(tonic::Code::PermissionDenied, "access denied to perform action \"list\" on \"event\"".into()));
    let denied = client.get_unstructured_events(everything(5, String::new())).await.expect_err("denied");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn the_identity_the_stand_in_writes_has_every_part_teleport_writes() {
    let setup = setup(StandInOptions::default()).await;
    let file = IdentityFile::parse(&std::fs::read(&setup.identity).expect("read")).expect("parses");
    assert!(file.private_key.as_deref().is_some_and(|key| key.starts_with(b"-----BEGIN PRIVATE KEY-----")));
    assert!(file.ssh_cert.as_deref().is_some_and(|line| line.starts_with(b"ecdsa-sha2-nistp256-cert-v01@openssh.com AAAA")));
    assert!(file.tls_cert.as_deref().is_some_and(|cert| cert.starts_with(b"-----BEGIN CERTIFICATE-----")));
    assert_eq!(file.ssh_cas.len(), 1);
    assert!(file.ssh_cas[0].starts_with(b"@cert-authority ferry.test,*.ferry.test ssh-ed25519 "));
    assert_eq!(file.tls_cas, vec![setup.standin.ca_pem().into_bytes()]);
    let material = setup.watcher.current();
    assert_eq!((material.cluster_name(), material.certificate().common_name.as_str()), ("ferry.test", "ferry"));
}

#[tokio::test]
async fn an_expired_identity_refuses_to_load_with_the_time() {
    let setup = setup(StandInOptions::default()).await;
    let expired = setup.identity.with_file_name("expired.pem");
    let issued = setup
        .standin
        .write_identity_with(&expired, &IdentitySpec { validity: Validity::Expired, ..IdentitySpec::default() })
        .expect("written");
    let err = IdentityWatcher::start(Credentials::IdentityFile(expired.clone()), Route::Direct, None).err().expect("expired");
    let when = humantime::format_rfc3339_seconds(issued.not_after).to_string();
    assert_eq!(
        err.to_string(),
        format!("every certificate in {} expired at {when}; issue a new one (`tctl auth sign`, or Machine ID)", expired.display())
    );
}

#[tokio::test]
async fn a_key_pair_triple_connects_too() {
    let setup = setup(StandInOptions::default()).await;
    let dir = setup.identity.with_file_name("triple");
    let issued = setup.standin.write_key_pair(&dir, &IdentitySpec { user: "triple".into(), ..IdentitySpec::default() }).expect("written");
    let credentials = Credentials::KeyPair { cert: dir.join("tls.crt"), key: dir.join("tls.key"), ca: dir.join("tls.cas") };
    let watcher = IdentityWatcher::start(credentials, Route::Direct, None).expect("loads");
    let channel = connect(&setup.standin.address(), &watcher.client_tls(), &ConnectOptions::default()).await.expect("connects");
    audit_log_client(channel).get_unstructured_events(everything(1, String::new())).await.expect("answers");
    let peer = setup.standin.calls().pop().and_then(|call| call.peer).expect("peer");
    assert_eq!((peer.common_name, peer.serial), ("triple".to_owned(), issued.serial));
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let setup = setup(StandInOptions::default()).await;
    let foreign = setup.identity.with_file_name("foreign.pem");
    setup.standin.write_identity_with(&foreign, &IdentitySpec { foreign_ca: true, ..IdentitySpec::default() }).expect("written");
    let watcher = IdentityWatcher::start(Credentials::IdentityFile(foreign), Route::Direct, None).expect("loads: the file itself is fine");
    let addr = setup.standin.address();
    // With TLS 1.3 the client learns of the refusal after its side of the
    // handshake, so it surfaces at connect or at the first call.
    let outcome = match connect(&addr, &watcher.client_tls(), &ConnectOptions::default()).await {
        Err(err) => err.to_string(),
        Ok(channel) => {
            audit_log_client(channel).get_unstructured_events(everything(1, String::new())).await.expect_err("refused").to_string()
        }
    };
    assert!(!outcome.contains('\n'), "{outcome}");
    assert!(setup.standin.calls().is_empty(), "no call reached the service");
    let refused = setup.standin.refusals(1).await;
    assert!(refused.iter().any(|reason| reason.contains("UnknownIssuer") || reason.contains("unknown issuer")), "{refused:?}");
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_with_the_address() {
    let setup = setup(StandInOptions::default()).await;
    setup.standin.set_server_validity(Validity::Expired).expect("new server certificate");
    let addr = setup.standin.address();
    let err = connect(&addr, &setup.watcher.client_tls(), &ConnectOptions::default()).await.expect_err("expired").to_string();
    assert!(err.starts_with(&format!("cannot connect to Teleport at {addr}: ")), "{err}");
    assert!(err.contains("expired") && !err.contains('\n'), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_a_one_line_error_naming_the_address() {
    let setup = setup(StandInOptions::default()).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let err = connect(&addr, &setup.watcher.client_tls(), &ConnectOptions::default()).await.expect_err("refused").to_string();
    assert_eq!(
        err,
        format!("cannot reach Teleport: nothing is listening at {addr} (connection refused): check the port, and that the service is up")
    );
}

#[tokio::test]
async fn a_rotated_identity_is_used_by_new_connections() {
    let standin = TeleportStandIn::start(StandInOptions::default()).await.expect("starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("auth.pem");
    let first = standin.write_identity(&path).expect("first identity");
    let watcher =
        IdentityWatcher::start(Credentials::IdentityFile(path.clone()), Route::Direct, Some(Duration::from_millis(20))).expect("loads");
    let tls: ClientTls = watcher.client_tls();
    let old_channel = connect(&standin.address(), &tls, &ConnectOptions::default()).await.expect("connects");
    let mut old_client = audit_log_client(old_channel);
    old_client.get_unstructured_events(everything(1, String::new())).await.expect("answers");

    let mut changes = watcher.subscribe();
    let second = standin.write_identity(&path).expect("rotated identity");
    assert_ne!(first.serial, second.serial);
    tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|material| material.certificate().serial == second.serial))
        .await
        .expect("the watcher re-reads the file")
        .expect("watcher alive");

    let new_channel = connect(&standin.address(), &tls, &ConnectOptions::default()).await.expect("connects");
    audit_log_client(new_channel).get_unstructured_events(everything(1, String::new())).await.expect("answers");
    old_client.get_unstructured_events(everything(1, String::new())).await.expect("the open connection carries on");
    let serials: Vec<String> = standin.calls().into_iter().filter_map(|call| call.peer).map(|peer| peer.serial).collect();
    assert_eq!(serials, vec![first.serial.clone(), second.serial, first.serial]);
}

#[tokio::test]
async fn a_broken_rewrite_keeps_the_previous_identity() {
    let setup = setup(StandInOptions::default()).await;
    let watcher = IdentityWatcher::start(Credentials::IdentityFile(setup.identity.clone()), Route::Direct, Some(Duration::from_millis(20)))
        .expect("loads");
    let before = watcher.current().certificate().serial.clone();
    let mut errors = watcher.reload_error();
    std::fs::write(&setup.identity, "-----BEGIN PRIVATE KEY-----\ncut short").expect("write");
    let error =
        tokio::time::timeout(Duration::from_secs(10), errors.wait_for(Option::is_some)).await.expect("seen").expect("alive").clone();
    // Usually "a PEM block has no END line"; an empty file if polled mid-write.
    let prefix = format!("{}: ", setup.identity.display());
    assert!(error.as_deref().is_some_and(|error| error.starts_with(&prefix)), "{error:?}");
    assert_eq!(watcher.current().certificate().serial, before, "the previous identity stays");

    let mut changes = watcher.subscribe();
    let next = setup.standin.write_identity(&setup.identity).expect("rewritten");
    tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|material| material.certificate().serial == next.serial))
        .await
        .expect("reloaded")
        .expect("alive");
    assert_eq!(*watcher.reload_error().borrow(), None);
}

#[tokio::test]
async fn through_a_proxy_with_tls_routing_ferry_offers_the_auth_alpn_first() {
    let setup = setup(StandInOptions { tls_routing: true, ..StandInOptions::default() }).await;
    let addr = setup.standin.address();
    let cluster = setup.watcher.current().cluster_name().to_owned();
    let routed =
        IdentityWatcher::start(Credentials::IdentityFile(setup.identity.clone()), Route::TlsRouting { cluster }, None).expect("loads");
    let channel = connect(&addr, &routed.client_tls(), &ConnectOptions::default()).await.expect("connects");
    audit_log_client(channel).get_unstructured_events(everything(1, String::new())).await.expect("answers");
    let peer = setup.standin.connections().pop().expect("a connection");
    assert_eq!(peer.sni.as_deref(), Some(API_DOMAIN));
    assert_eq!(peer.alpn, vec!["teleport-auth@66657272792e74657374.teleport.cluster.local".to_owned(), "h2".to_owned()]);

    let direct = connect(&addr, &setup.watcher.client_tls(), &ConnectOptions::default()).await;
    assert!(direct.is_err(), "the proxy refuses a connection that does not ask for the Auth Service");
    let refused = setup.standin.refusals(1).await;
    assert!(refused.iter().any(|reason| reason.starts_with("TLS routing: ALPN [\"h2\"]")), "{refused:?}");
}
