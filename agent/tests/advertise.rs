//! `--advertise auto` and `cladnet set --advertise`, as an operator uses
//! them on a cloud VM behind a 1:1 NAT: a fake AWS metadata service
//! (IMDSv2: a session token first, refusing requests without it) answers
//! at 169.254.169.254 in the site's router; `init --advertise auto` says
//! what it found and the agent publishes that address; `set` changes
//! what a running agent advertises, and a stopped node's setting holds
//! when it starts again.

mod common;

use anyhow::{bail, Context, Result};
use common::net::{Member, Net};
use std::net::Ipv4Addr;
use std::time::Duration;
use testbed::serde_json::Value;
use testbed::{Lab, NatKind};

/// An EC2-like metadata service: a token from `PUT /latest/api/token`,
/// then `GET /latest/meta-data/public-ipv4` with that token answers the
/// address given as the first argument, once the file named by the second
/// exists (a gate the test closes to make the service slow); anything
/// else is refused.
const FAKE_IMDS: &str = r#"
import http.server, os, sys, time
IP, GATE = sys.argv[1], sys.argv[2]
TOKEN = "lab-token-5f2c"
class Imds(http.server.BaseHTTPRequestHandler):
    def answer(self, code, body=""):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_PUT(self):
        ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self.answer(200, TOKEN) if ok else self.answer(403)
    def do_GET(self):
        if self.path != "/latest/meta-data/public-ipv4":
            return self.answer(404)
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            return self.answer(401)
        for _ in range(200):
            if os.path.exists(GATE):
                break
            time.sleep(0.05)
        self.answer(200, IP)
http.server.ThreadingHTTPServer(("169.254.169.254", 80), Imds).serve_forever()
"#;

fn advertised(net: &Net, i: usize) -> Result<Vec<String>> {
    let st = net.status(i)?;
    Ok(st["advertised"]
        .as_array()
        .context("status has no advertised list")?
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect())
}

#[test]
fn advertise_auto_asks_the_metadata_service_and_set_changes_it() -> Result<()> {
    if testbed::skip_unless_root("advertise lab") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let site = lab.add_site("cs", "10.0.1.0/24", NatKind::OneToOne, 1500)?;
    let vm = lab.add_site_node(&site, "vm", Ipv4Addr::new(10, 0, 1, 5))?;
    let members = vec![Member::in_lab(&lab, vm)];
    let mut net = Net { lab, members };
    let r = scenario(&mut net, &site);
    net.lab.check(r)
}

fn scenario(net: &mut Net, site: &testbed::Site) -> Result<()> {
    let public = site.wan_addr().to_string();
    let router = site.router().clone();
    net.lab.run(
        &router,
        &["ip", "addr", "add", "169.254.169.254/32", "dev", "lan"],
    )?;
    let script = net.lab.write_file("imds.py", FAKE_IMDS)?;
    let script = script.to_string_lossy().into_owned();
    let gate = net.lab.write_file("imds-open", "")?;
    let gate_arg = gate.to_string_lossy().into_owned();
    let _imds = net
        .lab
        .spawn(&router, "imds", &["python3", &script, &public, &gate_arg])?;
    let up = testbed::wait_until_every(Duration::from_secs(5), Duration::from_millis(100), || {
        net.lab
            .run(&router, &["ss", "-ltnH", "sport = :80"])
            .is_ok_and(|o| o.contains("169.254.169.254"))
    });
    if !up {
        bail!("the fake metadata service did not start");
    }
    // init says what the metadata service reported.
    let mut argv: Vec<String> = vec![common::bin().into(), "init".into()];
    argv.extend(net.node_args("vm"));
    argv.extend(
        [
            "--cidr",
            common::net::CIDR,
            "--advertise",
            "auto",
            "--state",
        ]
        .map(String::from),
    );
    argv.push(net.members[0].state.to_string_lossy().into_owned());
    let out = net.lab.exec(&net.members[0].node, &argv)?;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "init failed: {said}");
    assert!(
        said.contains("AWS IMDSv2") && said.contains(&public),
        "init does not say what the metadata service reported: {said}"
    );
    net.start(0)?;
    let want = format!("{public}:51820");
    assert_eq!(
        advertised(net, 0)?,
        std::slice::from_ref(&want),
        "the agent's own lookup"
    );
    // A running agent takes a new address at once, and nothing on request.
    let said = net.cli(0, &["set", "--advertise", "198.18.0.200:4500"])?;
    assert!(said.contains("198.18.0.200:4500"), "{said}");
    assert_eq!(advertised(net, 0)?, ["198.18.0.200:4500"]);
    net.cli(0, &["set", "--no-advertise"])?;
    assert!(advertised(net, 0)?.is_empty());
    // The agent never waits on the metadata service: while it is slow,
    // `set --advertise auto` and `status` are answered, and the address
    // is published when the service answers (the lookup once held the
    // control loop until it gave up, and nothing was published).
    std::fs::remove_file(&gate)?;
    net.cli(0, &["set", "--advertise", "auto"])?;
    net.status(0)?;
    std::fs::write(&gate, "")?;
    let published =
        testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(100), || {
            advertised(net, 0).is_ok_and(|a| a == [want.clone()])
        });
    assert!(
        published,
        "the slow answer was not published: {:?}",
        advertised(net, 0)
    );
    net.cli(0, &["set", "--no-advertise"])?;
    // Bad input: one sentence, non-zero exit, the setting unchanged.
    let state = net.members[0].state.to_string_lossy().into_owned();
    let bad = net.lab.exec(
        &net.members[0].node,
        &[
            common::bin(),
            "set",
            "--advertise",
            "cloud.example",
            "--state",
            &state,
        ],
    )?;
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && why.contains("IP:PORT"), "{why}");
    // A stopped node keeps what `set` says for its next start.
    let agent = net.members[0].agent.take().context("no agent")?;
    drop(agent);
    let stopped =
        testbed::wait_until_every(Duration::from_secs(10), Duration::from_millis(100), || {
            net.cli(0, &["status"]).is_err()
        });
    if !stopped {
        bail!("the agent did not stop");
    }
    let said = net.cli(0, &["set", "--advertise", "auto"])?;
    assert!(said.contains("when it starts"), "{said}");
    net.start(0)?;
    assert_eq!(advertised(net, 0)?, [want]);
    // Other settings (issue 13): labels at once, a port after a restart.
    let said = net.cli(0, &["set", "--label", "region=eu-west-1"])?;
    assert!(
        said.starts_with("applied now: labels region=eu-west-1"),
        "{said}"
    );
    let me = net
        .members(0)?
        .into_iter()
        .find(|m| m["self"] == true)
        .context("no self")?;
    assert_eq!(me["labels"]["region"], "eu-west-1", "{me}");
    let said = net.cli(0, &["set", "--listen", "0.0.0.0:51900"])?;
    assert!(
        said.contains("takes effect when the agent restarts")
            && said.contains("listen 0.0.0.0:51900"),
        "{said}"
    );
    let why = net
        .cli(0, &["set"])
        .err()
        .context("set without a change succeeded")?;
    assert!(why.to_string().contains("say what to change"), "{why}");
    net.members[0].agent.as_mut().context("no agent")?.stop()?;
    net.start(0)?;
    assert_eq!(net.status(0)?["listen"], "0.0.0.0:51900");
    Ok(())
}
