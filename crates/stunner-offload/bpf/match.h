// SPDX-License-Identifier: MIT OR GPL-2.0
//
// What a datagram is to the offload, read from its headers; shared by the TC and the
// XDP programs, which differ only in how they rewrite and send it.

#pragma once

#define HDRS4 (ETH_HLEN + 20 + 8)
#define HDRS6 (ETH_HLEN + 40 + 8)

// A datagram the programs take: a client's ChannelData on an offloaded channel
// (`down`), or a peer's datagram to an offloaded relay address (`up`).
struct match {
	void *down; // struct down_val * or struct down6_val *
	void *up;   // struct up_val * or struct up6_val *
	__u32 n;    // the payload, without a ChannelData header
	__be16 chan;
	__be16 cd_len;
};

// A ChannelData header's channel number and length (RFC 8656 §12.4), if the channel is
// in the range clients bind.
static __always_inline int channel_header(const __u8 *pl, struct match *m)
{
	__builtin_memcpy(&m->chan, pl, 2);
	__builtin_memcpy(&m->cd_len, pl + 2, 2);
	__u16 ch = bpf_ntohs(m->chan);
	return ch >= 0x4000 && ch <= 0x4fff;
}

// Unpadded and whole ChannelData (RFC 8656 §12.5 lets UDP frames skip padding; padded
// ones go up), small enough to move.
static __always_inline int whole(__u32 udp_len, struct match *m)
{
	m->n = bpf_ntohs(m->cd_len);
	return udp_len == 8 + 4 + m->n && m->n <= MAX_MOVE;
}

// IPv4/UDP without options or fragments. `frame_len` is the frame's length, which must
// be the datagram's (no link padding).
static __always_inline int match4(void *data, void *data_end, __u32 frame_len, struct match *m)
{
	if (data + HDRS4 + 4 > data_end)
		return 0;
	struct iphdr *ip = data + ETH_HLEN;
	struct udphdr *udp = data + ETH_HLEN + 20;
	if (ip->ihl != 5 || ip->version != 4 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return 0;
	__u32 udp_len = bpf_ntohs(udp->len);
	if (bpf_ntohs(ip->tot_len) != 20 + udp_len || frame_len != ETH_HLEN + 20 + udp_len ||
	    udp_len < 8)
		return 0;
	if (channel_header((__u8 *)(udp + 1), m)) {
		struct down_key k = {
			.client_ip = ip->saddr,
			.listener_ip = ip->daddr,
			.client_port = udp->source,
			.listener_port = udp->dest,
			.channel = m->chan,
		};
		struct down_val *v = bpf_map_lookup_elem(&down, &k);
		if (v) {
			m->down = v;
			return whole(udp_len, m);
		}
	}
	struct up_key uk = {
		.peer_ip = ip->saddr,
		.relay_ip = ip->daddr,
		.peer_port = udp->source,
		.relay_port = udp->dest,
	};
	struct up_val *uv = bpf_map_lookup_elem(&up, &uk);
	if (!uv || udp_len - 8 > MAX_MOVE)
		return 0;
	m->up = uv;
	m->n = udp_len - 8;
	return 1;
}

// IPv6/UDP right after the fixed header (no extension headers), with a checksum.
static __always_inline int match6(void *data, void *data_end, __u32 frame_len, struct match *m)
{
	if (data + HDRS6 + 4 > data_end)
		return 0;
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	struct udphdr *udp = data + ETH_HLEN + 40;
	if (ip6->nexthdr != IPPROTO_UDP || udp->check == 0)
		return 0;
	__u32 udp_len = bpf_ntohs(udp->len);
	if (bpf_ntohs(ip6->payload_len) != udp_len || frame_len != ETH_HLEN + 40 + udp_len ||
	    udp_len < 8)
		return 0;
	if (channel_header((__u8 *)(udp + 1), m)) {
		struct down6_key k = {
			.client_port = udp->source,
			.listener_port = udp->dest,
			.channel = m->chan,
		};
		__builtin_memcpy(k.client_ip, &ip6->saddr, 16);
		__builtin_memcpy(k.listener_ip, &ip6->daddr, 16);
		struct down6_val *v = bpf_map_lookup_elem(&down6, &k);
		if (v) {
			m->down = v;
			return whole(udp_len, m);
		}
	}
	struct up6_key uk = {
		.peer_port = udp->source,
		.relay_port = udp->dest,
	};
	__builtin_memcpy(uk.peer_ip, &ip6->saddr, 16);
	__builtin_memcpy(uk.relay_ip, &ip6->daddr, 16);
	struct up6_val *uv = bpf_map_lookup_elem(&up6, &uk);
	if (!uv || udp_len - 8 > MAX_MOVE)
		return 0;
	m->up = uv;
	m->n = udp_len - 8;
	return 1;
}
