//! GSO bursts in both directions: a client sends eight ChannelData frames in one
//! `UDP_SEGMENT` send and the peer gets eight datagrams; a peer sends eight datagrams in
//! one send and the client gets eight ChannelData frames. On loopback the kernel hands
//! such a burst to a socket with UDP GRO (stunnerd's listener and relay sockets) as one
//! coalesced buffer, so this exercises the per-segment read paths.

use std::net::UdpSocket;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt::UdpGsoSegment};
use stunner_turn::{Received, Request};

use crate::harness::*;

const N: usize = 8;
const PAYLOAD: usize = 100;

fn payload(i: usize) -> Vec<u8> {
    (0..PAYLOAD).map(|j| (i * 31 + j) as u8).collect()
}

#[test]
fn gso_bursts_through_listener_and_relay() {
    let (port, health) = (free_port(), free_port());
    let d = Stunnerd::start(
        "gso",
        &config(port, health, STATIC_AUTH, "\"127.0.0.1/32\""),
        health,
        &[],
    );
    d.wait_ready(200, Duration::from_secs(5));
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut c = TurnClient::new(port, "user", "pass");
    let Received::Allocated { relayed, .. } = c.request(Request::Allocate { lifetime: None })
    else {
        panic!("no allocation");
    };
    let r = c.request(Request::ChannelBind {
        channel: 0x4000,
        peer: peer.local_addr().unwrap(),
    });
    assert_eq!(r, Received::ChannelBound);

    // Client → peer: one send of eight equal ChannelData frames.
    let mut burst = Vec::new();
    for i in 0..N {
        burst.extend(c.client.channel_data(0x4000, &payload(i)));
    }
    let frame = burst.len() / N;
    setsockopt(&c.sock, UdpGsoSegment, &(frame as i32)).unwrap();
    c.sock.send_to(&burst, c.server).unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..N {
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(from, relayed, "datagram {i} came from elsewhere");
        assert_eq!(&buf[..n], &payload(i)[..], "datagram {i} at the peer");
    }

    // Peer → client: one send of eight equal datagrams to the relayed address.
    let burst: Vec<u8> = (0..N).flat_map(payload).collect();
    setsockopt(&peer, UdpGsoSegment, &(PAYLOAD as i32)).unwrap();
    peer.send_to(&burst, relayed).unwrap();
    for i in 0..N {
        let (n, _) = c.sock.recv_from(&mut buf).unwrap();
        match c.client.receive(&buf[..n]) {
            Received::ChannelData { channel, range } => {
                assert_eq!(channel, 0x4000);
                assert_eq!(&buf[range], &payload(i)[..], "frame {i} at the client");
            }
            other => panic!("frame {i} at the client: {other:?}"),
        }
    }
}
