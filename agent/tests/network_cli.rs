//! The network commands refuse bad input with one sentence and exit 1, and
//! `addr-space recommend` avoids the host networks it is given.

mod common;

use std::process::Command;
use testbed::serde_json::{self, Value};

fn cladnet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::bin())
        .args(args)
        .output()
        .expect("run cladnet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fails_with(args: &[&str], needle: &str) {
    let (ok, _, err) = cladnet(args);
    assert!(!ok, "{args:?} succeeded");
    // The first line says it all (clap adds a hint line for usage errors).
    let first = err.trim().lines().next().unwrap_or_default();
    assert!(first.contains(needle), "{args:?}: {err}");
}

/// `init --name a --cidr 100.64.0.0/24` into `state`, with `extra`
/// arguments; what it printed.
fn init_a(state: &str, extra: &[&str]) -> String {
    let base = [
        "init",
        "--state",
        state,
        "--name",
        "a",
        "--cidr",
        "100.64.0.0/24",
    ];
    let (ok, out, err) = cladnet(&[&base[..], extra].concat());
    assert!(ok, "init: {err}");
    out
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cladnet-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn bad_tokens_names_and_states_are_refused_clearly() {
    let dir = temp_dir("bad");
    let state = dir.to_string_lossy().into_owned();
    fails_with(
        &["join", "hello", "--state", &state, "--name", "x"],
        "not a cladnet invite token",
    );
    fails_with(
        &["join", "cladnet1.!!!", "--state", &state, "--name", "x"],
        "not a cladnet invite token",
    );
    fails_with(
        &["init", "--state", &state, "--name", "Bad Name"],
        "node name",
    );
    fails_with(
        &[
            "init",
            "--state",
            &state,
            "--name",
            "a",
            "--cidr",
            "100.64.0.0/33",
        ],
        "not an IPv4 network",
    );
    fails_with(&["status", "--state", &state], "no cladnet state");
    fails_with(&["members", "--state", &state], "no cladnet state");
    fails_with(
        &["invite", "--state", &state, "--ttl", "soon"],
        "not a duration",
    );
    assert!(!dir.exists(), "refusals create nothing");
}

#[test]
fn init_twice_is_refused_and_a_stopped_agent_is_named() {
    let dir = temp_dir("twice");
    let state = dir.to_string_lossy().into_owned();
    let out = init_a(
        &state,
        &["--listen", "127.0.0.1:1", "--control-listen", "127.0.0.1:2"],
    );
    assert!(out.contains("100.64.0.0/24"), "{out}");
    fails_with(
        &["init", "--state", &state, "--name", "a"],
        "already holds a cladnet state",
    );
    fails_with(&["status", "--state", &state], "agent of");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recommend_avoids_the_given_host_networks() {
    let (ok, out, err) = cladnet(&[
        "addr-space",
        "recommend",
        "--host-cidr",
        "10.0.0.0/9",
        "--host-cidr",
        "10.128.0.0/9",
        "--hosts",
        "100",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let rec = v["recommendation"]["recommended"]
        .as_str()
        .expect("recommended");
    assert!(!rec.starts_with("10."), "10/8 is fully taken, got {rec}");
    assert!(
        rec.ends_with("/23"),
        "100 hosts with growth need a /23, got {rec}"
    );
    fails_with(
        &["addr-space", "recommend", "--host-cidr", "10.0.0.0/33"],
        "not an IPv4 network",
    );
}

#[test]
fn init_draws_a_random_range_and_labels_and_tags_are_checked() {
    let mut drawn = Vec::new();
    for i in 0..3 {
        let dir = temp_dir(&format!("draw{i}"));
        let state = dir.to_string_lossy().into_owned();
        let (ok, out, err) = cladnet(&[
            "init",
            "--state",
            &state,
            "--name",
            "a",
            "--label",
            "region=eu-west-1",
        ]);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(ok, "init: {err}");
        assert!(out.contains("drawn at random"), "{out}");
        let range = out
            .split_whitespace()
            .nth(2)
            .and_then(|r| r.parse::<federation::Cidr>().ok())
            .unwrap_or_else(|| panic!("no range in {out}"));
        let region: federation::Cidr = "10.0.0.0/9".parse().unwrap();
        assert!(region.covers(&range) && range.prefix() == 22, "{out}");
        drawn.push(range);
    }
    assert!(
        drawn.iter().any(|r| *r != drawn[0]),
        "three networks drew the same range {drawn:?}"
    );
    let dir = temp_dir("label");
    let state = dir.to_string_lossy().into_owned();
    fails_with(
        &[
            "init",
            "--state",
            &state,
            "--name",
            "a",
            "--label",
            "Region=x y",
        ],
        "is not a label",
    );
    fails_with(
        &["invite", "--state", &state, "--tag", "Shared"],
        "is not a tag",
    );
    let nine: Vec<String> = (0..9).map(|i| format!("k{i}=v")).collect();
    let mut args = vec!["init", "--state", &state, "--name", "a"];
    for l in &nine {
        args.extend(["--label", l.as_str()]);
    }
    fails_with(&args, "at most 8");
    assert!(!dir.exists(), "refusals create nothing");
}

#[test]
fn the_authority_key_moves_out_of_the_state_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("authority");
    let state = dir.join("state").to_string_lossy().into_owned();
    init_a(&state, &[]);
    let taken = dir.join("taken");
    std::fs::write(&taken, "something\n").unwrap();
    let taken_s = taken.to_string_lossy().into_owned();
    fails_with(
        &["authority", "export", "--state", &state, "--out", &taken_s],
        "does not exist yet",
    );
    let out = dir.join("authority.key");
    let out_s = out.to_string_lossy().into_owned();
    let (ok, said, err) = cladnet(&["authority", "export", "--state", &state, "--out", &out_s]);
    assert!(ok, "export after a refused one: {err}");
    assert!(said.contains("keep it offline"), "{said}");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("cladnet-authority1.") && text.trim().len() == 19 + 64,
        "{text}"
    );
    fails_with(
        &[
            "authority",
            "export",
            "--state",
            &state,
            "--out",
            &dir.join("again").to_string_lossy(),
        ],
        "holds no authority key",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn set_edits_a_node_whose_agent_stops_while_it_asks() {
    let dir = temp_dir("set-race");
    let state = dir.to_string_lossy().into_owned();
    init_a(&state, &[]);
    // An agent that takes the connection and stops without an answer.
    let listener = std::os::unix::net::UnixListener::bind(dir.join("agent.sock")).expect("bind");
    let stopping = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        drop(conn);
        drop(listener);
    });
    let (ok, out, err) = cladnet(&["set", "--state", &state, "--label", "region=eu-west-1"]);
    stopping.join().expect("the fake agent");
    assert!(ok, "set failed: {err}");
    assert!(out.contains("labels region=eu-west-1"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn init_names_the_node_after_the_host_without_name() {
    // A host of its own name: a new UTS namespace (root, like the labs).
    if testbed::skip_unless_root("host name test") {
        return;
    }
    let dir = temp_dir("hostname");
    let state = dir.to_string_lossy().into_owned();
    let script = format!(
        "echo Web_01.Example.COM > /proc/sys/kernel/hostname && exec {} init --state {state} --cidr 100.64.0.0/24",
        common::bin()
    );
    let out = Command::new("unshare")
        .args(["--uts", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    let (said, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "init without --name: {err}");
    assert!(said.contains("this node web-01 has address"), "{said}");
}
