//! NAT sites (root only; they skip loudly otherwise).

use anyhow::{bail, ensure, Context, Result};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};
use testbed::{skip_unless_root, Lab, NatKind, Node, Site};

const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 10);

/// A UDP socket bound to 0.0.0.0:`port` inside `node`'s namespace.
fn udp(lab: &Lab, node: &Node, port: u16) -> Result<UdpSocket> {
    let s = lab
        .in_netns(node, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))?
        .with_context(|| format!("bind udp {port} in {}", node.name))?;
    s.set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(s)
}

/// Waits up to `timeout` for one datagram: (payload, source).
fn recv_within(s: &UdpSocket, timeout: Duration) -> Option<(String, SocketAddrV4)> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        if let Ok((n, SocketAddr::V4(from))) = s.recv_from(&mut buf) {
            return Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
        }
    }
    None
}

/// Sends `msg` from `s` to `dst` every 100 ms until `rx` gets it (at most
/// `timeout`); returns the source `rx` saw.
fn send_until_seen(
    s: &UdpSocket,
    dst: SocketAddrV4,
    rx: &UdpSocket,
    msg: &str,
    timeout: Duration,
) -> Result<SocketAddrV4> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        s.send_to(msg.as_bytes(), dst)?;
        if let Some((m, from)) = recv_within(rx, Duration::from_millis(100)) {
            if m == msg {
                return Ok(from);
            }
        }
    }
    bail!("{msg:?} to {dst} never arrived");
}

fn conntrack_count(lab: &Lab, site: &Site) -> Result<u64> {
    Ok(lab
        .run(
            site.router(),
            &["cat", "/proc/sys/net/netfilter/nf_conntrack_count"],
        )?
        .trim()
        .parse()?)
}

fn lab_namespaces(id: &str) -> Result<Vec<String>> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    let prefix = format!("{id}-");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect())
}

#[test]
fn cone_site_reaches_out_but_is_not_reachable() -> Result<()> {
    if skip_unless_root("cone_site_reaches_out_but_is_not_reachable") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let id = lab.id().to_string();
    let p = lab.add_node("p")?;
    let site = lab.add_site("ra", "192.168.2.0/24", NatKind::Cone, 1400)?;
    let a = lab.add_site_node(&site, "a", HOST)?;
    let (pa, wan) = (lab.addr(&p), site.wan_addr());
    ensure!(lab.addr(&a) == HOST, "addr(a) = {}", lab.addr(&a));
    ensure!(lab.addr(site.router()) == wan, "addr(router) != wan");
    ensure!(site.subnet() == "192.168.2.0/24" && site.gateway() == Ipv4Addr::new(192, 168, 2, 1));
    ensure!(
        lab.run(&a, &["ip", "-o", "link", "show", "eth0"])?
            .contains("mtu 1400"),
        "LAN MTU not applied"
    );
    ensure!(lab.set_addr(&a, "198.18.0.99".parse()?).is_err());
    ensure!(lab.set_addr(site.router(), "198.18.0.99".parse()?).is_err());

    ensure!(
        lab.wait_ping(&p, wan, Duration::from_secs(5)),
        "p cannot ping the router's WAN {wan}"
    );
    ensure!(
        lab.wait_ping(&a, pa, Duration::from_secs(5)),
        "a cannot ping p ({pa})"
    );
    // No private address and no route to a LAN on the switch side.
    let p_addrs = lab.run(&p, &["ip", "-4", "-o", "addr"])?;
    let p_routes = lab.run(&p, &["ip", "-4", "route"])?;
    ensure!(
        !p_addrs.contains("192.168") && !p_routes.contains("192.168"),
        "private range on the switch side: {p_addrs}{p_routes}"
    );
    ensure!(
        !lab.ping1(&p, HOST),
        "p pings a's LAN address without a route"
    );

    // UDP a -> p: source is the router's WAN, port kept (cone).
    let ps = udp(&lab, &p, 7000)?;
    let as_ = udp(&lab, &a, 40000)?;
    let from = send_until_seen(
        &as_,
        SocketAddrV4::new(pa, 7000),
        &ps,
        "hello from a",
        Duration::from_secs(5),
    )?;
    ensure!(*from.ip() == wan, "p saw {from}, expected {wan}:*");
    ensure!(from.port() == 40000, "cone NAT changed the port: {from}");
    // The reply comes back through the mapping.
    ps.send_to(b"reply", from)?;
    let (m, rfrom) = recv_within(&as_, Duration::from_secs(3)).context("no reply at a")?;
    ensure!(
        m == "reply" && rfrom == SocketAddrV4::new(pa, 7000),
        "{m} from {rfrom}"
    );

    // Even with an explicit route through the router, nothing gets in
    // unsolicited: ping and UDP to a's private address fail.
    let wan_s = wan.to_string();
    lab.run(&p, &["ip", "route", "add", "192.168.2.0/24", "via", &wan_s])?;
    ensure!(
        !lab.ping1(&p, HOST),
        "p pings a's LAN address through the router"
    );
    let as2 = udp(&lab, &a, 40001)?;
    ps.send_to(b"unsolicited", SocketAddrV4::new(HOST, 40001))?;
    ensure!(
        recv_within(&as2, Duration::from_millis(700)).is_none(),
        "unsolicited UDP reached a"
    );
    // ...nor to the router's WAN at a's mapped port from another port.
    let ps2 = udp(&lab, &p, 7001)?;
    ps2.send_to(b"other port", SocketAddrV4::new(wan, 40000))?;
    ensure!(
        recv_within(&as_, Duration::from_millis(700)).is_none(),
        "datagram from an unrelated port passed the NAT"
    );

    let names = lab_namespaces(&id)?;
    for n in ["sw", "p", "ra", "a"] {
        ensure!(
            names.contains(&format!("{id}-{n}")),
            "{id}-{n} missing: {names:?}"
        );
    }
    drop((ps, ps2, as_, as2));
    drop(lab);
    let left = lab_namespaces(&id)?;
    ensure!(left.is_empty(), "namespaces left after drop: {left:?}");
    Ok(())
}

#[test]
fn two_sites_with_the_same_subnet_and_host() -> Result<()> {
    if skip_unless_root("two_sites_with_the_same_subnet_and_host") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let p = lab.add_node("p")?;
    let r1 = lab.add_site("r1", "192.168.2.0/24", NatKind::Cone, 1500)?;
    let r2 = lab.add_site("r2", "192.168.2.0/24", NatKind::Cone, 1500)?;
    let a1 = lab.add_site_node(&r1, "a1", HOST)?;
    let a2 = lab.add_site_node(&r2, "a2", HOST)?;
    ensure!(
        lab.add_site_node(&r1, "dup", HOST).is_err(),
        "duplicate host accepted"
    );
    ensure!(r1.wan_addr() != r2.wan_addr());
    let pa = lab.addr(&p);
    for n in [&a1, &a2] {
        ensure!(
            lab.wait_ping(n, pa, Duration::from_secs(5)),
            "{} cannot ping p",
            n.name
        );
    }
    let ps = udp(&lab, &p, 7000)?;
    let dst = SocketAddrV4::new(pa, 7000);
    let s1 = udp(&lab, &a1, 40000)?;
    let s2 = udp(&lab, &a2, 40000)?;
    let f1 = send_until_seen(&s1, dst, &ps, "from a1", Duration::from_secs(5))?;
    let f2 = send_until_seen(&s2, dst, &ps, "from a2", Duration::from_secs(5))?;
    ensure!(*f1.ip() == r1.wan_addr(), "a1 seen as {f1}");
    ensure!(*f2.ip() == r2.wan_addr(), "a2 seen as {f2}");
    ensure!(f1.ip() != f2.ip());
    Ok(())
}

/// Both sides send to each other's WAN at the port their socket is bound to
/// (what a rendezvous server would have told them for a cone NAT), every
/// 50 ms for `duration`; `x` alone during the first `head_start`.
/// Returns (x received from y, y received from x).
fn punch(
    lab: &Lab,
    (sx, x, px): (&Site, &Node, u16),
    (sy, y, py): (&Site, &Node, u16),
    head_start: Duration,
    duration: Duration,
) -> Result<(bool, bool)> {
    let ux = udp(lab, x, px)?;
    let uy = udp(lab, y, py)?;
    ux.set_read_timeout(Some(Duration::from_millis(5)))?;
    uy.set_read_timeout(Some(Duration::from_millis(5)))?;
    let to_y = SocketAddrV4::new(sy.wan_addr(), py);
    let to_x = SocketAddrV4::new(sx.wan_addr(), px);
    let (mut x_got, mut y_got) = (false, false);
    let start = Instant::now();
    let mut buf = [0u8; 100];
    while start.elapsed() < duration && !(x_got && y_got) {
        ux.send_to(b"punch from x", to_y)?;
        if start.elapsed() >= head_start {
            uy.send_to(b"punch from y", to_x)?;
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            if let Ok((n, from)) = ux.recv_from(&mut buf) {
                x_got |= &buf[..n] == b"punch from y";
                eprintln!("x got {:?} from {from}", String::from_utf8_lossy(&buf[..n]));
            }
            if let Ok((n, from)) = uy.recv_from(&mut buf) {
                y_got |= &buf[..n] == b"punch from x";
                eprintln!("y got {:?} from {from}", String::from_utf8_lossy(&buf[..n]));
            }
        }
    }
    Ok((x_got, y_got))
}

#[test]
fn hole_punching_cone_works_symmetric_fails() -> Result<()> {
    if skip_unless_root("hole_punching_cone_works_symmetric_fails") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let p = lab.add_node("p")?;
    let c1 = lab.add_site("c1", "192.168.2.0/24", NatKind::Cone, 1500)?;
    let c2 = lab.add_site("c2", "10.1.0.0/16", NatKind::Cone, 1500)?;
    let sy = lab.add_site("sy", "192.168.2.0/24", NatKind::Symmetric, 1500)?;
    let a = lab.add_site_node(&c1, "a", HOST)?;
    let b = lab.add_site_node(&c2, "b", "10.1.2.3".parse()?)?;
    let s = lab.add_site_node(&sy, "s", HOST)?;

    // Mapping behaviour seen by two public endpoints: cone keeps one public
    // port for every destination, symmetric picks a new one per destination.
    let pa = lab.addr(&p);
    let (p1, p2) = (udp(&lab, &p, 7000)?, udp(&lab, &p, 7001)?);
    for (site, node, want_same) in [(&c1, &a, true), (&sy, &s, false)] {
        let u = udp(&lab, node, 45000)?;
        let m = format!("from {}", node.name);
        let f1 = send_until_seen(
            &u,
            SocketAddrV4::new(pa, 7000),
            &p1,
            &m,
            Duration::from_secs(5),
        )?;
        let f2 = send_until_seen(
            &u,
            SocketAddrV4::new(pa, 7001),
            &p2,
            &m,
            Duration::from_secs(5),
        )?;
        eprintln!(
            "{:?} site {}: mappings {f1} and {f2}",
            site.kind(),
            site.name()
        );
        ensure!(*f1.ip() == site.wan_addr() && *f2.ip() == site.wan_addr());
        ensure!(
            (f1.port() == f2.port()) == want_same,
            "{:?}: mappings {f1} / {f2}",
            site.kind()
        );
    }

    // Cone <-> cone: works, even when one side starts 300 ms earlier (its
    // first datagrams hit the other router before that one has a mapping).
    let (x_got, y_got) = punch(
        &lab,
        (&c1, &a, 41000),
        (&c2, &b, 42000),
        Duration::from_millis(300),
        Duration::from_secs(4),
    )?;
    ensure!(
        x_got && y_got,
        "cone<->cone punching failed: a got {x_got}, b got {y_got}"
    );

    // Cone <-> symmetric: the symmetric side's public port is not the one
    // predicted, so nothing arrives either way.
    let (x_got, y_got) = punch(
        &lab,
        (&c1, &a, 41001),
        (&sy, &s, 43000),
        Duration::ZERO,
        Duration::from_secs(2),
    )?;
    ensure!(
        !x_got && !y_got,
        "cone<->symmetric punching got through: a got {x_got}, s got {y_got}"
    );
    Ok(())
}

#[test]
fn change_site_wan_moves_the_public_address() -> Result<()> {
    if skip_unless_root("change_site_wan_moves_the_public_address") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let p = lab.add_node("p")?;
    let site = lab.add_site("ra", "172.16.5.0/24", NatKind::Cone, 1500)?;
    let a = lab.add_site_node(&site, "a", "172.16.5.20".parse()?)?;
    let pa = lab.addr(&p);
    let dst = SocketAddrV4::new(pa, 7000);
    let ps = udp(&lab, &p, 7000)?;
    let us = udp(&lab, &a, 40000)?;
    let old = site.wan_addr();
    let f = send_until_seen(&us, dst, &ps, "before", Duration::from_secs(5))?;
    ensure!(*f.ip() == old, "before: seen as {f}, wan {old}");
    ensure!(lab.wait_ping(&a, pa, Duration::from_secs(5)));
    ensure!(
        conntrack_count(&lab, &site)? > 0,
        "no conntrack entries before"
    );

    let new = lab.change_site_wan(&site)?;
    ensure!(new != old, "same address");
    ensure!(site.wan_addr() == new && lab.addr(site.router()) == new);
    ensure!(
        testbed::wait_until(Duration::from_secs(3), || conntrack_count(&lab, &site)
            .is_ok_and(|c| c == 0)),
        "conntrack not flushed: {:?}",
        conntrack_count(&lab, &site)
    );
    // Same socket, same destination: now from the new address.
    let f = send_until_seen(&us, dst, &ps, "after", Duration::from_secs(5))?;
    ensure!(*f.ip() == new, "after: seen as {f}, new wan {new}");
    ensure!(
        lab.wait_ping(&p, new, Duration::from_secs(5)),
        "new WAN not pingable"
    );
    ensure!(!lab.ping1(&p, old), "old WAN still answers");

    // A given address.
    let given: Ipv4Addr = "198.18.0.77".parse()?;
    lab.change_site_wan_to(&site, given)?;
    let f = send_until_seen(&us, dst, &ps, "given", Duration::from_secs(5))?;
    ensure!(*f.ip() == given, "given: seen as {f}");
    ensure!(
        lab.change_site_wan_to(&site, pa).is_err(),
        "took p's address"
    );
    ensure!(lab.change_site_wan_to(&site, "10.0.0.1".parse()?).is_err());
    Ok(())
}

#[test]
fn full_cone_lets_anyone_in_address_restricted_only_the_contacted() -> Result<()> {
    if skip_unless_root("full_cone_lets_anyone_in_address_restricted_only_the_contacted") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let (p, q) = (lab.add_node("p")?, lab.add_node("q")?);
    let fc = lab.add_site("fc", "192.168.2.0/24", NatKind::FullCone, 1500)?;
    let ar = lab.add_site("ar", "192.168.2.0/24", NatKind::AddressRestricted, 1500)?;
    let f = lab.add_site_node(&fc, "f", HOST)?;
    let a = lab.add_site_node(&ar, "a", HOST)?;
    ensure!(
        lab.add_site_node(&fc, "f2", "192.168.2.11".parse()?)
            .is_err(),
        "a full-cone site holds one VM"
    );
    let pa = lab.addr(&p);
    let (p1, p2, q1) = (
        udp(&lab, &p, 7000)?,
        udp(&lab, &p, 7001)?,
        udp(&lab, &q, 7000)?,
    );
    for (site, node, others_get_in) in [(&fc, &f, true), (&ar, &a, false)] {
        let u = udp(&lab, node, 45000)?;
        // The VM talks to p:7000 only.
        let mapped = send_until_seen(
            &u,
            SocketAddrV4::new(pa, 7000),
            &p1,
            "out",
            Duration::from_secs(5),
        )?;
        ensure!(*mapped.ip() == site.wan_addr() && mapped.port() == 45000);
        // p from another port: both let it in (address p was contacted).
        p2.send_to(b"from p:7001", mapped)?;
        let got = recv_within(&u, Duration::from_millis(500));
        ensure!(
            got.as_ref().is_some_and(|(m, _)| m == "from p:7001"),
            "{:?}: p's other port was not let in: {got:?}",
            site.kind()
        );
        // q, never contacted: only the full cone lets it in.
        q1.send_to(b"from q", mapped)?;
        let got = recv_within(&u, Duration::from_millis(500));
        ensure!(
            got.is_some() == others_get_in,
            "{:?}: a stranger got {got:?}",
            site.kind()
        );
    }
    Ok(())
}
