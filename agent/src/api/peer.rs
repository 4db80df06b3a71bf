//! Who is calling: credentials of the connected peer, and what they may do.
//!
//! Authorisation uses only what the kernel vouches for on the socket
//! (SO_PEERCRED and SO_PEERGROUPS): uid, gid and supplementary groups. Nothing
//! the client sends can raise its rights.

use std::os::fd::AsRawFd;

use tokio::net::UnixStream;

/// Credentials of the process at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    /// Status, health, generations, audit.
    Read,
    /// Everything, including changes to the host.
    Admin,
}

/// Group ids that grant roles; `None` when the group does not exist.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub read_gid: Option<u32>,
    pub admin_gid: Option<u32>,
}

impl Policy {
    pub fn role(&self, peer: &Peer) -> Role {
        let member = |gid: Option<u32>| gid.is_some_and(|g| peer.gid == g || peer.groups.contains(&g));
        if peer.uid == 0 || member(self.admin_gid) {
            Role::Admin
        } else if member(self.read_gid) {
            Role::Read
        } else {
            Role::None
        }
    }
}

impl Peer {
    pub fn of(stream: &UnixStream) -> std::io::Result<Peer> {
        let cred = stream.peer_cred()?;
        Ok(Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            groups: peer_groups(stream.as_raw_fd())?,
        })
    }
}

/// Supplementary groups of the peer as the kernel recorded them at connect().
#[allow(unsafe_code)]
fn peer_groups(fd: std::os::fd::RawFd) -> std::io::Result<Vec<u32>> {
    let mut groups = vec![0 as libc::gid_t; 256];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is a live buffer of exactly `len` bytes, and the
        // kernel writes at most `len` bytes into it and updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let err = std::io::Error::last_os_error();
        // ERANGE: the buffer was too small and `len` now holds the size needed.
        if err.raw_os_error() == Some(libc::ERANGE) && count > groups.len() {
            groups.resize(count, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn roles_follow_uid_and_groups() {
        let p = Policy {
            read_gid: Some(100),
            admin_gid: Some(200),
        };
        assert_eq!(p.role(&peer(0, 0, &[])), Role::Admin);
        assert_eq!(p.role(&peer(1000, 1000, &[200])), Role::Admin);
        assert_eq!(p.role(&peer(1000, 200, &[])), Role::Admin);
        assert_eq!(p.role(&peer(1000, 1000, &[100])), Role::Read);
        assert_eq!(p.role(&peer(1000, 1000, &[300])), Role::None);
        let none = Policy::default();
        assert_eq!(none.role(&peer(1000, 1000, &[100, 200])), Role::None);
    }
}
