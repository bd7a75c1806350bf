//! Free loopback ports: bind port 0 and read back the port the system chose.

use std::io;
use std::net::{TcpListener, UdpSocket};

/// A UDP port on 127.0.0.1 that was free a moment ago (for a relay's `[[listen]]`).
pub fn free_udp_port() -> io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a relay's API).
pub fn free_tcp_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
