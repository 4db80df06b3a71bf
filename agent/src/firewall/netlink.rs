//! nf_tables over netlink, for the two things `nft` cannot do cheaply: read
//! the ruleset's generation id, and add or remove a few set elements without
//! dumping the whole set first.
//!
//! Sockets come from `netlink-sys` and attributes are framed and parsed with
//! `netlink-packet-core`; no permissively licensed crate carries the
//! nf_tables message layouts, so the few this needs are written here with
//! the constants of the kernel's uapi headers (`linux/netfilter/nfnetlink.h`,
//! `linux/netfilter/nf_tables.h`), named as there. Every message is tested
//! against the real kernel in a network namespace (`netlink/tests.rs`).
//!
//! What the kernel took is never assumed: an element batch carries the
//! generation id it was planned against (`NFNL_BATCH_GENID`, so a ruleset
//! changed by anyone in between refuses it whole), every message asks for an
//! ACK, and afterwards the generation must be exactly one commit later.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use ipnet::IpNet;
use netlink_packet_core::{
    DefaultNla, Emitable, ErrorBuffer, NetlinkBuffer, NlaBuffer, NlasIterator, NLA_F_NESTED, NLMSG_DONE, NLMSG_ERROR,
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::{Socket, SocketAddr};

// linux/netfilter/nfnetlink.h
pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NLMSG_MIN_TYPE`
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_BATCH_GENID: u16 = 1;
pub(crate) const NFNLGRP_NFTABLES: u32 = 7;
const NFNETLINK_V0: u8 = 0;
/// Size of `struct nfgenmsg` (family, version, res_id).
pub(crate) const NFGENMSG_LEN: usize = 4;
// linux/netfilter.h
pub(crate) const NFPROTO_UNSPEC: u8 = 0;
pub(crate) const NFPROTO_INET: u8 = 1;
// linux/netfilter/nf_tables.h, enum nf_tables_msg_types
const NFT_MSG_GETTABLE: u16 = 1;
pub(crate) const NFT_MSG_GETCHAIN: u16 = 4;
pub(crate) const NFT_MSG_GETRULE: u16 = 7;
pub(crate) const NFT_MSG_GETSET: u16 = 10;
pub(crate) const NFT_MSG_NEWSETELEM: u16 = 12;
pub(crate) const NFT_MSG_GETSETELEM: u16 = 13;
pub(crate) const NFT_MSG_DELSETELEM: u16 = 14;
pub(crate) const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
pub(crate) const NFT_MSG_MAX: u16 = 25;
// enum nft_gen_attributes
pub(crate) const NFTA_GEN_ID: u16 = 1;
// enum nft_set_elem_list_attributes
pub(crate) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(crate) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(crate) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
// enum nft_list_attributes
pub(crate) const NFTA_LIST_ELEM: u16 = 1;
// enum nft_set_elem_attributes
pub(crate) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(crate) const NFTA_SET_ELEM_FLAGS: u16 = 3;
// enum nft_data_attributes
pub(crate) const NFTA_DATA_VALUE: u16 = 1;
pub(crate) const NFTA_DATA_VERDICT: u16 = 2;
// enum nft_set_elem_flags
pub(crate) const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
/// Attribute 1 of every table, chain, rule, set, element, object and
/// flowtable message names its table (`NFTA_TABLE_NAME`, `NFTA_CHAIN_TABLE`, …).
pub(crate) const NFTA_OBJECT_TABLE: u16 = 1;

/// Elements per message: the element list is one attribute, whose length
/// field is 16 bits (an IPv6 start/end pair takes about 64 bytes).
const ELEMENTS_PER_MESSAGE: usize = 400;
/// How long the kernel may take to answer; it answers in microseconds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netfilter netlink socket")]
    Open(#[source] io::Error),
    #[error("cannot send to nf_tables over netlink")]
    Send(#[source] io::Error),
    #[error("no answer from nf_tables over netlink")]
    Receive(#[source] io::Error),
    #[error("nf_tables sent a message that does not parse: {0}")]
    Malformed(String),
    #[error("the ruleset changed (generation {planned} → {now}) while the change was planned; nothing was sent")]
    Moved { planned: u32, now: u32 },
    #[error("nf_tables refused the element change ({what})")]
    Refused {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("nf_tables acknowledged the element change but did not commit it (generation {before} → {after})")]
    NotCommitted { before: u32, after: u32 },
    #[error("the ruleset changed while table inet bulwark was being read")]
    Interrupted,
}

/// Elements to add to and remove from one interval set of table inet bulwark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetChange {
    pub set: String,
    pub add: Vec<IpNet>,
    pub remove: Vec<IpNet>,
}

/// Bytes read from the socket at once. The kernel sizes each dump message
/// batch by the largest read it has seen (up to 32 KiB): reading with a
/// small buffer makes a dump of 100,000 set elements take thousands of
/// batches, each of which walks the set from its start again.
const RECEIVE_BYTES: usize = 64 * 1024;

/// One datagram from `socket`.
pub(crate) fn receive(socket: &Socket, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    buf.reserve(RECEIVE_BYTES);
    socket.recv(buf, 0).map(drop)
}

/// A netlink socket for nf_tables requests.
#[derive(Debug)]
pub struct NfTables {
    socket: Socket,
    buf: Vec<u8>,
    seq: u32,
    /// The inet table read and changed: Bulwark's own.
    table: String,
}

impl NfTables {
    /// Opens in the network namespace of the calling thread.
    pub fn open() -> Result<NfTables, NetlinkError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NetlinkError::Open)?;
        socket.bind_auto().map_err(NetlinkError::Open)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(NetlinkError::Open)?;
        set_timeout(&socket, ANSWER_TIMEOUT).map_err(NetlinkError::Open)?;
        Ok(NfTables {
            socket,
            buf: Vec::with_capacity(RECEIVE_BYTES),
            seq: 1,
            table: super::ruleset::TABLE.to_owned(),
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// The ruleset's generation id: it changes with every commit by anyone,
    /// so an equal id means nothing in any table changed.
    pub fn generation(&mut self) -> Result<u32, NetlinkError> {
        let seq = self.next_seq();
        let mut buf = Vec::with_capacity(32);
        message(
            &mut buf,
            nft(NFT_MSG_GETGEN),
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            NFPROTO_UNSPEC,
            0,
            &[],
        );
        self.socket.send(&buf, 0).map_err(NetlinkError::Send)?;
        let mut generation = None;
        loop {
            receive(&self.socket, &mut self.buf).map_err(NetlinkError::Receive)?;
            for msg in messages(&self.buf)? {
                if msg.seq != seq {
                    continue;
                }
                match msg.error {
                    Some(Err(e)) => {
                        return Err(NetlinkError::Refused {
                            what: "get generation".to_owned(),
                            source: e,
                        })
                    }
                    Some(Ok(())) => {
                        return generation
                            .ok_or_else(|| NetlinkError::Malformed("no NFT_MSG_NEWGEN before the ACK".into()))
                    }
                    None => generation = Some(gen_id(&msg.payload)?),
                }
            }
        }
    }

    /// A dump request for nf_tables message `msg` (`GETSET`, `GETRULE`, …)
    /// in `family`: every object message until `NLMSG_DONE`, payloads after
    /// `nfgenmsg`. A dump the kernel flags as interrupted (the ruleset
    /// changed under it) is [`NetlinkError::Interrupted`].
    pub(crate) fn dump(&mut self, msg: u16, family: u8, attrs: &[DefaultNla]) -> Result<Vec<Received>, NetlinkError> {
        let seq = self.next_seq();
        let mut buf = Vec::new();
        message(&mut buf, nft(msg), NLM_F_REQUEST | NLM_F_DUMP, seq, family, 0, attrs);
        self.socket.send(&buf, 0).map_err(NetlinkError::Send)?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            receive(&self.socket, &mut self.buf).map_err(NetlinkError::Receive)?;
            for m in messages(&self.buf)? {
                if m.seq != seq {
                    continue;
                }
                interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                if m.kind == NLMSG_DONE {
                    return if interrupted {
                        Err(NetlinkError::Interrupted)
                    } else {
                        Ok(out)
                    };
                }
                match m.error {
                    Some(Err(e)) => {
                        return Err(NetlinkError::Refused {
                            what: format!("dump of nf_tables message {msg}"),
                            source: e,
                        })
                    }
                    Some(Ok(())) => return Ok(out),
                    None => out.push(m),
                }
            }
        }
    }

    /// Whether inet table `name` exists.
    pub fn table_exists(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let seq = self.next_seq();
        let mut buf = Vec::new();
        let attrs = [string_nla(NFTA_OBJECT_TABLE, name)];
        message(
            &mut buf,
            nft(NFT_MSG_GETTABLE),
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            NFPROTO_INET,
            0,
            &attrs,
        );
        self.socket.send(&buf, 0).map_err(NetlinkError::Send)?;
        let mut found = false;
        loop {
            receive(&self.socket, &mut self.buf).map_err(NetlinkError::Receive)?;
            for m in messages(&self.buf)? {
                match (m.seq == seq, m.error) {
                    (false, _) => {}
                    (true, None) => found = true,
                    (true, Some(Ok(()))) => return Ok(found),
                    (true, Some(Err(e))) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
                    (true, Some(Err(e))) => {
                        return Err(NetlinkError::Refused {
                            what: format!("get table inet {name}"),
                            source: e,
                        })
                    }
                }
            }
        }
    }

    pub(crate) fn table_name(&self) -> &str {
        &self.table
    }

    /// Apply `changes` to table inet bulwark in one transaction planned
    /// against generation `planned`. Returns the generation of the commit.
    /// On any error the kernel holds what it held before.
    pub fn change_elements(&mut self, planned: u32, changes: &[SetChange]) -> Result<u32, NetlinkError> {
        let mut buf = Vec::new();
        let begin = self.next_seq();
        let genid = DefaultNla::new(NFNL_BATCH_GENID, planned.to_be_bytes().to_vec());
        message(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
            &[genid],
        );
        let mut expected = Vec::new();
        for change in changes {
            for (kind, nets, flags) in [
                (NFT_MSG_DELSETELEM, &change.remove, 0),
                (NFT_MSG_NEWSETELEM, &change.add, NLM_F_CREATE | NLM_F_EXCL),
            ] {
                for chunk in nets.chunks(ELEMENTS_PER_MESSAGE) {
                    let seq = self.next_seq();
                    expected.push(seq);
                    let attrs = [
                        string_nla(NFTA_SET_ELEM_LIST_TABLE, &self.table),
                        string_nla(NFTA_SET_ELEM_LIST_SET, &change.set),
                        nested(NFTA_SET_ELEM_LIST_ELEMENTS, &interval_elements(chunk)),
                    ];
                    message(
                        &mut buf,
                        nft(kind),
                        NLM_F_REQUEST | NLM_F_ACK | flags,
                        seq,
                        NFPROTO_INET,
                        0,
                        &attrs,
                    );
                }
            }
        }
        let end = self.next_seq();
        message(
            &mut buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        if expected.is_empty() {
            return Ok(planned);
        }
        self.socket.send(&buf, 0).map_err(NetlinkError::Send)?;

        let mut refused = None;
        let mut answered = 0;
        while answered < expected.len() {
            receive(&self.socket, &mut self.buf).map_err(NetlinkError::Receive)?;
            for msg in messages(&self.buf)? {
                match msg.error {
                    // ERESTART on the batch itself: the generation moved.
                    Some(Err(_)) if msg.seq == begin => {
                        let now = self.generation()?;
                        return Err(NetlinkError::Moved { planned, now });
                    }
                    Some(result) if expected.contains(&msg.seq) => {
                        answered += 1;
                        if let (Err(source), None) = (result, &refused) {
                            refused = Some(NetlinkError::Refused {
                                what: describe(changes, &expected, msg.seq),
                                source,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(e) = refused {
            return Err(e);
        }
        let after = self.generation()?;
        if after != next_generation(planned) {
            return Err(NetlinkError::NotCommitted { before: planned, after });
        }
        Ok(after)
    }
}

/// The generation after one commit (the kernel skips 0 when it wraps).
pub fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// `a` is a later generation than `b` (serial number arithmetic: ids wrap).
pub fn later(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Which message of the batch the kernel refused, for the error.
fn describe(changes: &[SetChange], expected: &[u32], seq: u32) -> String {
    let index = expected.iter().position(|s| *s == seq).unwrap_or(0);
    let mut i = 0;
    for c in changes {
        for (verb, nets) in [("remove from", &c.remove), ("add to", &c.add)] {
            for chunk in nets.chunks(ELEMENTS_PER_MESSAGE) {
                if i == index {
                    let first = chunk.first().map(ToString::to_string).unwrap_or_default();
                    return format!("{verb} set {}: {} element(s) from {first}", c.set, chunk.len());
                }
                i += 1;
            }
        }
    }
    format!("message {seq}")
}

/// An interval set holds each network as two elements: its first address,
/// and the first address after it flagged `NFT_SET_ELEM_INTERVAL_END`.
/// Callers never pass a network that ends at the top of the address space
/// (it has no address after it; see [`has_end`]).
fn interval_elements(nets: &[IpNet]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nets.len() * 64);
    for net in nets {
        let start = element(&addr_bytes(net.network()), None);
        let end = element(&addr_bytes(after(net)), Some(NFT_SET_ELEM_INTERVAL_END));
        for e in [start, end] {
            emit(&mut out, &nested(NFTA_LIST_ELEM, &e));
        }
    }
    out
}

/// Whether `net` has an address after it (it does not end at the top of the
/// address space), so it can be sent as a start/end pair.
pub fn has_end(net: &IpNet) -> bool {
    match net.broadcast() {
        IpAddr::V4(a) => u32::from(a) != u32::MAX,
        IpAddr::V6(a) => u128::from(a) != u128::MAX,
    }
}

/// The first address after `net`.
pub fn after(net: &IpNet) -> IpAddr {
    match net.broadcast() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).wrapping_add(1).into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).wrapping_add(1).into()),
    }
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn element(key: &[u8], flags: Option<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    let value = DefaultNla::new(NFTA_DATA_VALUE, key.to_vec());
    emit(&mut out, &nested(NFTA_SET_ELEM_KEY, &emitted(&value)));
    if let Some(f) = flags {
        emit(
            &mut out,
            &DefaultNla::new(NFTA_SET_ELEM_FLAGS, f.to_be_bytes().to_vec()),
        );
    }
    out
}

fn string_nla(kind: u16, s: &str) -> DefaultNla {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    DefaultNla::new(kind, v)
}

fn nested(kind: u16, inner: &[u8]) -> DefaultNla {
    DefaultNla::new(kind | NLA_F_NESTED, inner.to_vec())
}

fn emitted(nla: &DefaultNla) -> Vec<u8> {
    let mut out = Vec::new();
    emit(&mut out, nla);
    out
}

fn emit(out: &mut Vec<u8>, nla: &DefaultNla) {
    let at = out.len();
    out.resize(at + nla.buffer_len(), 0);
    nla.emit(&mut out[at..]);
}

/// The netlink message type of nf_tables message `msg`.
fn nft(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// Append one nfnetlink message: `nlmsghdr`, `nfgenmsg`, attributes.
fn message(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[DefaultNla]) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 16]);
    buf.extend_from_slice(&[family, NFNETLINK_V0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    for a in attrs {
        emit(buf, a);
    }
    let len = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
    let mut hdr = NetlinkBuffer::new(&mut buf[start..]);
    hdr.set_length(len);
    hdr.set_message_type(ty);
    hdr.set_flags(flags);
    hdr.set_sequence_number(seq);
    hdr.set_port_number(0);
}

/// One received message: its type, sequence number, and either the ACK or
/// error it carries (`NLMSG_ERROR`) or its payload after `nfgenmsg`.
#[derive(Debug)]
pub(crate) struct Received {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub family: u8,
    pub error: Option<Result<(), io::Error>>,
    pub payload: Vec<u8>,
}

/// Split a datagram into its netlink messages.
pub(crate) fn messages(mut data: &[u8]) -> Result<Vec<Received>, NetlinkError> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let buf = NetlinkBuffer::new_checked(data).map_err(|e| NetlinkError::Malformed(e.to_string()))?;
        let len = buf.length() as usize;
        let (kind, seq, flags) = (buf.message_type(), buf.sequence_number(), buf.flags());
        let payload = buf.payload();
        let received = if kind == NLMSG_ERROR {
            let err = ErrorBuffer::new_checked(payload).map_err(|e| NetlinkError::Malformed(e.to_string()))?;
            // The error message echoes the header of the request it answers.
            let seq = NetlinkBuffer::new_checked(err.payload())
                .map(|b| b.sequence_number())
                .unwrap_or(seq);
            let error = match err.code() {
                None => Ok(()),
                Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
            };
            Received {
                kind,
                flags,
                seq,
                family: NFPROTO_UNSPEC,
                error: Some(error),
                payload: Vec::new(),
            }
        } else {
            let family = payload.first().copied().unwrap_or(NFPROTO_UNSPEC);
            Received {
                kind,
                flags,
                seq,
                family,
                error: None,
                payload: payload.get(NFGENMSG_LEN..).unwrap_or_default().to_vec(),
            }
        };
        out.push(received);
        let aligned = (len + 3) & !3;
        if aligned == 0 || aligned > data.len() {
            break;
        }
        data = &data[aligned..];
    }
    Ok(out)
}

/// The value of attribute `kind` among `attrs`.
pub(crate) fn string_attr(kind: u16, s: &str) -> DefaultNla {
    string_nla(kind, s)
}

pub(crate) fn attribute(attrs: &[u8], kind: u16) -> Option<Vec<u8>> {
    NlasIterator::new(attrs)
        .filter_map(Result::ok)
        .find(|nla: &NlaBuffer<&[u8]>| nla.kind() == kind)
        .map(|nla| nla.value().to_vec())
}

/// `NFTA_GEN_ID` of a generation message.
pub(crate) fn gen_id(attrs: &[u8]) -> Result<u32, NetlinkError> {
    attribute(attrs, NFTA_GEN_ID)
        .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| NetlinkError::Malformed("a generation message without NFTA_GEN_ID".into()))
}

fn set_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
    use nix::sys::time::TimeVal;
    let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
    let fd = socket.as_fd();
    setsockopt(&fd, ReceiveTimeout, &TimeVal::new(secs, 0)).map_err(io::Error::from)
}

#[cfg(test)]
mod tests;
