//! The harness shared by relaymesh's end-to-end tests (`tests/`) and its benchmarks
//! (`bench/`), so that each piece exists once:
//!
//! * [`Pki`]: a temporary directory holding a deployment CA, which issues node certificates
//!   and loads their [`Credentials`](relaymesh::shell::tls::Credentials);
//! * [`free_udp_port`] and [`free_tcp_port`]: loopback ports nothing listens on;
//! * [`UdpProxy`]: a UDP forwarder whose link can be cut (datagrams vanish, or its sockets
//!   close) and healed;
//! * [`RawPeer`]: a QUIC connection made with real credentials, which speaks the protocol
//!   itself, as well or as badly as its caller likes.
//!
//! Everything here is blocking except the QUIC parts, which need a tokio runtime.

mod pki;
mod ports;
mod proxy;
mod raw;

pub use pki::{Pki, Tool};
pub use ports::{free_tcp_port, free_udp_port};
pub use proxy::{Cut, UdpProxy};
pub use raw::{Control, RawPeer, honest_hello, listen, read_hello};
