//! The overlay MTU follows the hosts' links at runtime, data plane
//! included: agents started while the links carried 1400 bytes (overlay
//! 1320, or a little less once path probing measured the links) see the
//! links widened to 1500 and move to 1420 — the interface, what the data
//! plane pads to and sizes its buffers for (a link change forgets what the
//! paths were found to carry), and full-size DF pings across.

mod common;

use anyhow::{bail, Result};
use common::net::{setup, Net};
use std::time::Duration;
use testbed::Lab;

#[test]
fn a_raised_link_mtu_reaches_the_data_plane() -> Result<()> {
    if testbed::skip_unless_root("mtu lab") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let mut net = setup(lab, &["a", "b"])?;
    let r = scenario(&mut net);
    net.lab.check(r)
}

fn set_link_mtu(net: &Net, i: usize, mtu: u16) -> Result<()> {
    let mtu = mtu.to_string();
    net.lab.run(
        &net.members[i].node,
        &["ip", "link", "set", "dev", "eth0", "mtu", &mtu],
    )?;
    Ok(())
}

/// Waits until both members report an overlay MTU in `range` and the data
/// plane at that same MTU. (Narrow links: 1320 from the hosts' links, or a
/// few bytes less once path probing has measured them.)
fn wait_mtu(net: &Net, range: std::ops::RangeInclusive<u64>) -> Result<()> {
    let mut last = String::new();
    let ok = testbed::wait_until_every(Duration::from_secs(40), Duration::from_millis(200), || {
        (0..2).all(|i| {
            net.status(i).is_ok_and(|s| {
                last = format!("interface {} data plane {}", s["mtu"], s["data_plane_mtu"]);
                s["mtu"].as_u64().is_some_and(|m| range.contains(&m))
                    && s["data_plane_mtu"] == s["mtu"]
            })
        })
    });
    if !ok {
        bail!("the MTU never settled in {range:?} everywhere (interface and data plane): {last}");
    }
    Ok(())
}

fn scenario(net: &mut Net) -> Result<()> {
    for i in 0..2 {
        set_link_mtu(net, i, 1400)?;
    }
    net.init(0, "a")?;
    net.start(0)?;
    let token = net.invite(0, &[])?;
    net.join(1, "b", &token)?;
    net.start(1)?;
    wait_mtu(net, 1300..=1320)?;
    // Restarted while the links are narrow: the data plane starts at 1320.
    for i in 0..2 {
        net.members[i]
            .agent
            .as_mut()
            .map(|p| p.stop())
            .transpose()?;
        net.start(i)?;
    }
    wait_mtu(net, 1300..=1320)?;
    for i in 0..2 {
        set_link_mtu(net, i, 1500)?;
    }
    wait_mtu(net, 1420..=1420)?;
    let b = net.address(1)?;
    // 1420 bytes: 1392 of ICMP payload, 8 of ICMP and 20 of IPv4 header.
    let ok = testbed::wait_until(Duration::from_secs(10), || {
        net.lab.ok(
            &net.members[0].node,
            &["ping", "-M", "do", "-s", "1392", "-c", "1", "-W", "1", &b],
        )
    });
    if !ok {
        bail!("a full-size DF ping does not cross the widened overlay");
    }
    Ok(())
}
