//! A raw protocol peer: a QUIC connection to or from a relay made with real credentials (so
//! mutual TLS passes), which then speaks the protocol itself, from the `Hello` on.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use relaymesh::core::Medium;
use relaymesh::shell::clock::Clock;
use relaymesh::shell::tls::Credentials;
use relaymesh::shell::transport::{self, QuicConfigs, TransportSettings};
use relaymesh::wire::{self, FrameDecoder, Hello, Incoming, PROTOCOL_VERSION};

/// One QUIC connection with a relay, authenticated both ways, before any `Hello`.
#[derive(Debug)]
pub struct RawPeer {
    /// The connection.
    pub conn: Connection,
    /// This end's credentials.
    pub creds: Credentials,
    /// The endpoint the connection runs on; it must live as long as the connection.
    pub endpoint: Endpoint,
}

/// The control stream after the `Hello` exchange.
#[derive(Debug)]
pub struct Control {
    /// This end's half of the control stream.
    pub send: SendStream,
    /// The other end's half, read as far as its `Hello`.
    pub recv: RecvStream,
    /// Holds whatever arrived after the other end's `Hello`.
    pub decoder: FrameDecoder,
    /// The other end's `Hello`.
    pub hello: Hello,
}

/// The `Hello` a node with `creds` sends: this protocol version, its own id and role, on
/// `public`.
pub fn honest_hello(creds: &Credentials) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        node: creds.identity.node.clone(),
        role: creds.identity.role,
        capabilities: vec![],
        medium: Medium::Public,
    }
}

/// Reads from `recv`, through `decoder`, up to the first `Hello`.
pub async fn read_hello(recv: &mut RecvStream, decoder: &mut FrameDecoder) -> Result<Hello> {
    loop {
        if let Some(Incoming::Hello(h)) = decoder.next_frame()? {
            return Ok(h);
        }
        match recv.read_chunk(65536, true).await? {
            Some(c) => decoder.extend(&c.bytes),
            None => bail!("closed before hello"),
        }
    }
}

/// An endpoint that accepts links on `addr` (port 0: any) with `creds`; returns it and the
/// address it is bound to. Hand it to [`RawPeer::accept`].
pub async fn listen(
    creds: &Credentials,
    clock: Clock,
    addr: SocketAddr,
) -> Result<(Endpoint, SocketAddr)> {
    let quic = QuicConfigs::new(creds, clock)?;
    let socket = transport::udp_socket(addr)?;
    let server = quic.server(&TransportSettings::default_for(Medium::Public));
    let endpoint = transport::endpoint(socket, Some(server), [2; 32], creds.reset_secret())?;
    let local = endpoint.local_addr()?;
    Ok((endpoint, local))
}

impl RawPeer {
    /// Dials node `peer` (the name its certificate must carry) at `addr`, from a fresh port
    /// (on loopback when `addr` is).
    pub async fn dial(
        creds: &Credentials,
        clock: Clock,
        peer: &str,
        addr: SocketAddr,
    ) -> Result<RawPeer> {
        let quic = QuicConfigs::new(creds, clock)?;
        let local = if addr.ip().is_loopback() { "127.0.0.1:0" } else { "0.0.0.0:0" };
        let socket = transport::udp_socket(local.parse()?)?;
        let endpoint = transport::endpoint(socket, None, [1; 32], creds.reset_secret())?;
        let cfg = quic.client(&TransportSettings::default_for(Medium::Public));
        let conn = endpoint.connect_with(cfg, addr, peer)?.await.context("handshake")?;
        Ok(RawPeer { conn, creds: creds.clone(), endpoint })
    }

    /// Accepts the next connection on `endpoint` (from [`listen`]).
    pub async fn accept(endpoint: Endpoint, creds: &Credentials) -> Result<RawPeer> {
        let incoming = endpoint.accept().await.context("endpoint closed")?;
        let conn = incoming.await?;
        Ok(RawPeer { conn, creds: creds.clone(), endpoint })
    }

    /// This end's honest `Hello` (see [`honest_hello`]).
    pub fn hello(&self) -> Hello {
        honest_hello(&self.creds)
    }

    /// Opens the control stream and writes `hello` on it, honest or not; reads nothing.
    pub async fn send_hello(&self, hello: &Hello) -> Result<(SendStream, RecvStream)> {
        let (mut send, recv) = self.conn.open_bi().await?;
        let mut buf = BytesMut::new();
        wire::encode_hello(hello, &mut buf);
        send.write_all(&buf).await?;
        Ok((send, recv))
    }

    /// The dialling side's exchange: opens the control stream, sends this end's honest
    /// `Hello` and reads the other end's.
    pub async fn handshake(&self) -> Result<Control> {
        let (send, mut recv) = self.send_hello(&self.hello()).await?;
        let mut decoder = FrameDecoder::new(wire::DEFAULT_MAX_FRAME);
        let hello = read_hello(&mut recv, &mut decoder).await?;
        Ok(Control { send, recv, decoder, hello })
    }

    /// The accepting side's exchange: accepts the control stream, reads the other end's
    /// `Hello` and answers with this end's honest one.
    pub async fn answer_hello(&self) -> Result<Control> {
        let (mut send, mut recv) = self.conn.accept_bi().await?;
        let mut decoder = FrameDecoder::new(wire::DEFAULT_MAX_FRAME);
        let hello = read_hello(&mut recv, &mut decoder).await?;
        let mut buf = BytesMut::new();
        wire::encode_hello(&self.hello(), &mut buf);
        send.write_all(&buf).await?;
        Ok(Control { send, recv, decoder, hello })
    }
}

#[cfg(test)]
mod tests {
    use relaymesh::core::Role;

    use super::*;
    use crate::{Pki, Tool};

    #[tokio::test]
    async fn two_raw_peers_link_and_exchange_hellos() {
        let pki = Pki::new("relaymesh-testkit", Tool::Library { days: 1 }).unwrap();
        let a = pki.issue_credentials("relay-a", Role::Relay).unwrap();
        let b = pki.issue_credentials("team-1", Role::Field).unwrap();
        let clock = Clock::wall();
        let (endpoint, addr) = listen(&a, clock, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let answering = tokio::spawn(async move {
            let peer = RawPeer::accept(endpoint, &a).await.unwrap();
            let control = peer.answer_hello().await.unwrap();
            (peer, control)
        });
        let dialler = RawPeer::dial(&b, clock, "relay-a", addr).await.unwrap();
        let control = dialler.handshake().await.unwrap();
        assert_eq!(control.hello.node.as_str(), "relay-a");
        assert_eq!(control.hello.role, Role::Relay);
        let (_peer, answered) = answering.await.unwrap();
        assert_eq!(answered.hello, honest_hello(&b));
    }
}
