//! A UDP forwarder between a client and a server whose link can be cut and healed.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

/// How [`UdpProxy::cut`] cuts the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The proxy keeps its sockets and silently discards every datagram, as on a dead radio
    /// link.
    Drop,
    /// The proxy closes both its sockets, so datagrams to it are refused (ICMP port
    /// unreachable) and nothing comes back; on [`UdpProxy::heal`] it binds the same ports
    /// again, so both ends see the same addresses as before.
    Close,
}

const OPEN: u8 = 0;
const DROPPING: u8 = 1;
const CLOSED: u8 = 2;

/// Forwards datagrams arriving on its port to a target, and the answers back to whoever sent
/// last. One thread, non-blocking sockets; stopped when dropped.
#[derive(Debug)]
pub struct UdpProxy {
    /// The port (on 127.0.0.1) clients send to instead of the target.
    pub port: u16,
    state: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpProxy {
    /// Starts forwarding from a fresh port on 127.0.0.1 to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<UdpProxy> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let port = front.local_addr()?.port();
        let state = Arc::new(AtomicU8::new(OPEN));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || forward(Some(front), port, target, &st, &sp));
        Ok(UdpProxy { port, state, stop, thread: Some(thread) })
    }

    /// Cuts the link, in the way `how` says.
    pub fn cut(&self, how: Cut) {
        let state = match how {
            Cut::Drop => DROPPING,
            Cut::Close => CLOSED,
        };
        self.state.store(state, Ordering::SeqCst);
    }

    /// Restores the link.
    pub fn heal(&self) {
        self.state.store(OPEN, Ordering::SeqCst);
    }
}

/// Binds the proxy's sockets: the front on `port`, the back on `back_port` (0: any), so
/// that after a closing cut both ends see the same addresses as before.
fn sockets(
    front: Option<UdpSocket>,
    port: u16,
    back_port: u16,
    target: SocketAddr,
) -> Option<[UdpSocket; 2]> {
    let front = match front {
        Some(f) => f,
        None => UdpSocket::bind(("127.0.0.1", port)).ok()?,
    };
    let back = UdpSocket::bind(SocketAddr::new(target.ip(), back_port)).ok()?;
    front.set_nonblocking(true).ok()?;
    back.set_nonblocking(true).ok()?;
    Some([front, back])
}

fn forward(
    front: Option<UdpSocket>,
    port: u16,
    target: SocketAddr,
    state: &AtomicU8,
    stop: &AtomicBool,
) {
    let mut socks = sockets(front, port, 0, target);
    let back_port = socks.as_ref().and_then(|[_, b]| b.local_addr().ok()).map_or(0, |a| a.port());
    let mut client: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let s = state.load(Ordering::SeqCst);
        if s == CLOSED {
            socks = None;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if socks.is_none() {
            socks = sockets(None, port, back_port, target);
            if socks.is_none() {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        }
        let Some([front, back]) = socks.as_ref() else { continue };
        let mut idle = true;
        for _ in 0..256 {
            let Ok((n, from)) = front.recv_from(&mut buf) else { break };
            idle = false;
            client = Some(from);
            if s == OPEN {
                let _ = back.send_to(&buf[..n], target);
            }
        }
        for _ in 0..256 {
            let Ok((n, _)) = back.recv_from(&mut buf) else { break };
            idle = false;
            if let (Some(to), OPEN) = (client, s) {
                let _ = front.send_to(&buf[..n], to);
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `msg` through the proxy and returns the echo, if one comes within 300 ms.
    fn echo_through(client: &UdpSocket, proxy: u16, msg: &[u8]) -> Option<Vec<u8>> {
        let _ = client.send_to(msg, ("127.0.0.1", proxy));
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).ok()?;
        Some(buf[..n].to_vec())
    }

    #[test]
    fn forwards_both_ways_and_cuts_either_way_then_heals_on_the_same_port() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = server.recv_from(&mut buf) {
                let _ = server.send_to(&buf[..n], from);
            }
        });
        let proxy = UdpProxy::start(target).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        assert_eq!(echo_through(&client, proxy.port, b"one").as_deref(), Some(&b"one"[..]));
        for how in [Cut::Drop, Cut::Close] {
            proxy.cut(how);
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(echo_through(&client, proxy.port, b"lost"), None, "{how:?}");
            proxy.heal();
            // The first datagram after a closing cut may race the proxy binding again.
            let back = (0..10).find_map(|_| echo_through(&client, proxy.port, b"back"));
            assert_eq!(back.as_deref(), Some(&b"back"[..]), "{how:?}");
        }
    }
}
