//! The host's listening sockets, from procfs: `/proc/net/{tcp,tcp6,udp,udp6}` (the reading
//! process's network namespace) and the owning process, found by the socket's inode among
//! `/proc/<pid>/fd`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

pub use vault_allowlist::Proto;

/// A TCP socket in LISTEN, or a UDP socket that is bound and not connected (it receives from
/// anyone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub proto: Proto,
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
    /// `comm (pid N)` of a process holding it, when one can be found.
    pub process: Option<String>,
}

impl Listener {
    /// `0.0.0.0:22` or `[::]:22`.
    pub fn endpoint(&self) -> String {
        match self.addr {
            IpAddr::V4(a) => format!("{a}:{}", self.port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.port),
        }
    }
}

/// The `st` column of the tables: TCP's states, and UDP's "unconnected" (TCP_CLOSE).
pub const TCP_ESTABLISHED: u8 = 0x01;
const TCP_LISTEN: u8 = 0x0A;
const UDP_UNCONNECTED: u8 = 0x07;

/// `0100007F` → 127.0.0.1: the kernel prints each 32-bit word of the address as the number
/// its bytes make in host order (`%08X`).
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(hex)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(hex.get(i * 8..i * 8 + 8)?)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// `0100007F:0016` → (127.0.0.1, 22).
fn parse_endpoint(field: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = field.split_once(':')?;
    Some((parse_addr(addr)?, u16::from_str_radix(port, 16).ok()?))
}

/// One socket of a `/proc/net/{tcp,tcp6,udp,udp6}` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRow {
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    /// The `st` column (e.g. [`TCP_ESTABLISHED`]).
    pub state: u8,
    pub inode: u64,
}

/// Every well-formed row of one table (the header and malformed lines are skipped).
pub fn socket_rows(text: &str) -> impl Iterator<Item = SocketRow> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        Some(SocketRow {
            local: parse_endpoint(f.get(1)?)?,
            remote: parse_endpoint(f.get(2)?)?,
            state: u8::from_str_radix(f.get(3)?, 16).ok()?,
            inode: f.get(9)?.parse().ok()?,
        })
    })
}

/// One `/proc/net/{tcp,tcp6,udp,udp6}` table: the listening (TCP) or unconnected (UDP) ones.
pub fn parse_proc_net(text: &str, proto: Proto) -> Vec<Listener> {
    let wanted = match proto {
        Proto::Tcp => TCP_LISTEN,
        Proto::Udp => UDP_UNCONNECTED,
    };
    socket_rows(text)
        .filter(|row| row.state == wanted)
        .map(|row| Listener {
            proto,
            addr: row.local.0,
            port: row.local.1,
            inode: row.inode,
            process: None,
        })
        .collect()
}

/// The inodes of the sockets among a process's fds (`/proc/<pid>/fd`: `socket:[N]`).
pub fn socket_inodes(fd_dir: &Path) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(fd_dir) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Socket inode → `comm (pid N)`, from every process's fds (the lowest pid wins).
pub fn socket_owners(proc_root: &Path) -> HashMap<u64, String> {
    let mut owners = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return owners;
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let dir = proc_root.join(pid.to_string());
        let inodes = socket_inodes(&dir.join("fd"));
        if inodes.is_empty() {
            continue;
        }
        let comm = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|_| "?".into());
        for inode in inodes {
            owners
                .entry(inode)
                .or_insert_with(|| format!("{comm} (pid {pid})"));
        }
    }
    owners
}

/// The listeners of the network namespace `proc_net` belongs to (`/proc/self/net` for the
/// daemon's own), with their processes.
pub fn read(proc_net: &Path, proc_root: &Path) -> std::io::Result<Vec<Listener>> {
    let mut all = Vec::new();
    for (file, proto) in [
        ("tcp", Proto::Tcp),
        ("tcp6", Proto::Tcp),
        ("udp", Proto::Udp),
        ("udp6", Proto::Udp),
    ] {
        match std::fs::read_to_string(proc_net.join(file)) {
            Ok(text) => all.extend(parse_proc_net(&text, proto)),
            // No IPv6 in this kernel: no tcp6/udp6 tables, nothing listens there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.ends_with('6') => {}
            Err(e) => return Err(e),
        }
    }
    let owners = socket_owners(proc_root);
    for l in &mut all {
        l.process = owners.get(&l.inode).cloned();
    }
    all.sort_by_key(|l| (l.proto, l.port, l.addr));
    all.dedup_by(|a, b| a.proto == b.proto && a.port == b.port && a.addr == b.addr);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_both_ends_the_state_and_the_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   1: 0100080A:0016 0200080A:C350 01 00000000:00000000 00:00000000 00000000     0        0 4242 1\n   2: garbage\n";
        let rows: Vec<SocketRow> = socket_rows(table).collect();
        assert_eq!(rows.len(), 1, "the malformed line is skipped");
        assert_eq!(rows[0].local, ("10.8.0.1".parse().unwrap(), 22));
        assert_eq!(rows[0].remote, ("10.8.0.2".parse().unwrap(), 50000));
        assert_eq!(rows[0].state, TCP_ESTABLISHED);
        assert_eq!(rows[0].inode, 4242);
        assert_eq!(
            parse_addr("00000000000000000000000001000000"),
            "::1".parse().ok()
        );
        assert_eq!(parse_addr("zz"), None);
    }

    #[test]
    fn the_kernel_s_tables_are_read_listening_tcp_and_unconnected_udp_only() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CA3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0CA3 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 20 4 30 10 -1
";
        let l = parse_proc_net(tcp, Proto::Tcp);
        assert_eq!(l.len(), 2, "the established connection is not a listener");
        assert_eq!(l[0].endpoint(), "127.0.0.1:3235");
        assert_eq!(l[1].endpoint(), "0.0.0.0:22");
        assert_eq!(l[1].inode, 2222);
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0
";
        let l = parse_proc_net(tcp6, Proto::Tcp);
        assert_eq!(l[0].endpoint(), "[::]:22");
        assert_eq!(l[1].endpoint(), "[::1]:631");
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7777 2 0000000000000000 0
  2: 0100007F:0035 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 8888 2 0000000000000000 0
";
        let l = parse_proc_net(udp, Proto::Udp);
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].endpoint(), l[0].proto),
            ("0.0.0.0:68".to_owned(), Proto::Udp)
        );
    }
}
