//! Interface configuration over rtnetlink: addresses, MTU, link state, routes.

use crate::DriverError;
use futures_util::stream::TryStreamExt;
use rtnetlink::{LinkUnspec, RouteMessageBuilder};
use std::net::IpAddr;

/// Handle on the kernel's routing netlink socket.
pub struct Netlink {
    handle: rtnetlink::Handle,
    iface: String,
}

impl Netlink {
    /// Opens a netlink connection (needs a running tokio runtime).
    pub fn connect(iface: &str) -> Result<Self, DriverError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| DriverError::Netlink {
            iface: iface.to_string(),
            what: "open netlink socket".into(),
            detail: e.to_string(),
        })?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            iface: iface.to_string(),
        })
    }

    /// Host network changes as the kernel announces them (an address added
    /// or removed, a link up, down or with a new MTU), one `()` each, so a
    /// caller re-reads the host at once instead of at its next poll. The
    /// stream ends if the netlink socket fails.
    pub fn host_changes(
        &self,
    ) -> Result<impl futures_util::Stream<Item = ()> + Unpin, DriverError> {
        use futures_util::StreamExt;
        use rtnetlink::constants::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK};
        use rtnetlink::sys::{AsyncSocket, SocketAddr};
        let fail = |what: &str, e: std::io::Error| DriverError::Netlink {
            iface: self.iface.clone(),
            what: what.into(),
            detail: e.to_string(),
        };
        let (mut conn, _, messages) =
            rtnetlink::new_connection().map_err(|e| fail("open netlink socket", e))?;
        let groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_LINK;
        conn.socket_mut()
            .socket_mut()
            .bind(&SocketAddr::new(0, groups))
            .map_err(|e| fail("subscribe to address and link changes", e))?;
        tokio::spawn(conn);
        Ok(messages.map(|_| ()))
    }

    fn err(&self, what: String) -> impl FnOnce(rtnetlink::Error) -> DriverError + '_ {
        move |e| DriverError::Netlink {
            iface: self.iface.clone(),
            what,
            detail: e.to_string(),
        }
    }

    /// Interface index of `name`, if it exists.
    pub async fn index_of(&self, name: &str) -> Result<Option<u32>, DriverError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(_) => Ok(None),
        }
    }

    /// Adds `addr/prefix` to interface `index`.
    pub async fn add_address(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), DriverError> {
        self.handle
            .address()
            .add(index, addr, prefix)
            .execute()
            .await
            .map_err(self.err(format!("add address {addr}/{prefix}")))
    }

    /// Every address on the host: (interface index, address, prefix).
    pub async fn addresses(&self) -> Result<Vec<(u32, IpAddr, u8)>, DriverError> {
        let mut dump = self.handle.address().get().execute();
        let mut out = Vec::new();
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(self.err("list addresses".into()))?
        {
            if let Some(addr) = address_of(&msg) {
                out.push((msg.header.index, addr, msg.header.prefix_len));
            }
        }
        Ok(out)
    }

    /// Every interface's index and MTU.
    pub async fn mtus(&self) -> Result<Vec<(u32, u32)>, DriverError> {
        use rtnetlink::packet_route::link::LinkAttribute;
        let mut dump = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(link) = dump
            .try_next()
            .await
            .map_err(self.err("list links".into()))?
        {
            let mtu = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            });
            if let Some(m) = mtu {
                out.push((link.header.index, m));
            }
        }
        Ok(out)
    }

    /// Makes `addr/prefix` the only IPv4 address of interface `index`.
    pub async fn replace_ipv4(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), DriverError> {
        let mut dump = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut stale = Vec::new();
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(self.err("list addresses".into()))?
        {
            match address_of(&msg) {
                Some(a) if a == addr && msg.header.prefix_len == prefix => return Ok(()),
                Some(IpAddr::V4(_)) => stale.push(msg),
                _ => {}
            }
        }
        for msg in stale {
            self.handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(self.err("remove the old address".into()))?;
        }
        self.add_address(index, addr, prefix).await
    }

    /// Sets MTU and brings interface `index` up.
    pub async fn set_up(&self, index: u32, mtu: u32) -> Result<(), DriverError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(self.err(format!("set MTU {mtu} and bring the link up")))
    }

    /// Routes `net/prefix` through interface `index`.
    pub async fn add_route(&self, index: u32, net: IpAddr, prefix: u8) -> Result<(), DriverError> {
        let msg = self.route_message(index, net, prefix)?;
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(self.err(format!("add route {net}/{prefix}")))
    }

    /// Removes the route of `net/prefix` through interface `index`.
    pub async fn del_route(&self, index: u32, net: IpAddr, prefix: u8) -> Result<(), DriverError> {
        let msg = self.route_message(index, net, prefix)?;
        self.handle
            .route()
            .del(msg)
            .execute()
            .await
            .map_err(self.err(format!("remove route {net}/{prefix}")))
    }

    fn route_message(
        &self,
        index: u32,
        net: IpAddr,
        prefix: u8,
    ) -> Result<rtnetlink::packet_route::route::RouteMessage, DriverError> {
        Ok(RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(net, prefix)
            .map_err(|e| DriverError::Netlink {
                iface: self.iface.clone(),
                what: format!("route {net}/{prefix}"),
                detail: e.to_string(),
            })?
            .output_interface(index)
            .build())
    }
}

fn address_of(msg: &rtnetlink::packet_route::address::AddressMessage) -> Option<IpAddr> {
    use rtnetlink::packet_route::address::AddressAttribute;
    let mut found = None;
    for a in &msg.attributes {
        match a {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => found = Some(*ip),
            _ => {}
        }
    }
    found
}
