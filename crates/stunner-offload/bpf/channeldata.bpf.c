// SPDX-License-Identifier: MIT OR GPL-2.0
//
// TC ingress offload of TURN ChannelData over UDP (RFC 8656 §12), and (xdp.h) the XDP
// program that does the same earlier where it can.
//
// client -> peer: a ChannelData datagram to a listener, from a client 5-tuple with a
//   bound channel in `down`, leaves as a plain UDP datagram from the relay address to
//   the peer (the 4-byte header stripped).
// peer -> client: a datagram from a peer to a relay address in `up` leaves as
//   ChannelData from the listener to the client (the header added).
// Both over IPv4 and over IPv6 (a channel's client and peer of one family).
// Everything else (STUN, Send/Data indications, unknown channels, padded or
// fragmented datagrams, IPv4 options, IPv6 extension headers, TCP) goes up to stunnerd
// unchanged: the program only ever takes packets it can finish.
//
// Checksums: the IPv4 header checksum and the UDP checksum are updated incrementally
// with bpf_l3/l4_csum_replace. The UDP header stays where it is (the payload moves by 4
// bytes instead), so an skb whose checksum is still to be completed on transmit
// (CHECKSUM_PARTIAL, e.g. from a local pod through a veth) keeps a valid checksum start;
// for such an skb the helpers apply only the pseudo-header changes, as they must.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"

#define AF_INET 2
#define IP_OFF ETH_HLEN
#define UDP_OFF (IP_OFF + 20)
#define PAYLOAD_OFF (UDP_OFF + 8)
#define IP_CSUM_OFF (IP_OFF + 10)
#define UDP_CSUM_OFF (UDP_OFF + 6)
#define IP6_OFF ETH_HLEN
#define UDP6_OFF (IP6_OFF + 40)
#define PAYLOAD6_OFF (UDP6_OFF + 8)
#define UDP6_CSUM_OFF (UDP6_OFF + 6)
// The largest payload moved (a loop bound for the verifier); larger ones go up.
#define MAX_MOVE 1472
#define RELAY_TTL 64

#include "match.h"

// Rewrites the IPv4 and UDP headers (incremental checksums); the payload has already
// been moved. The MAC addresses are bpf_redirect_neigh's: it routes the rewritten
// packet out of the given interface and fills them in from the neighbour table (as a
// locally sent packet; bpf_fib_lookup would need forwarding enabled on the interface).
static __always_inline int rewrite(struct __sk_buff *skb, __be32 osrc, __be32 odst, __be16 osport, __be16 odport,
				   __be16 olen, __be16 ottl_proto, __be32 nsrc, __be32 ndst,
				   __be16 nsport, __be16 ndport, __be16 nlen, __be16 nttl_proto,
				   __be16 otot, __be16 ntot)
{
	const __u64 l4 = BPF_F_MARK_MANGLED_0;
	// UDP checksum: addresses and length are in the pseudo-header; ports and the
	// length field in the header.
	if (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, osrc, nsrc, l4 | BPF_F_PSEUDO_HDR | 4) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, odst, ndst, l4 | BPF_F_PSEUDO_HDR | 4) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, olen, nlen, l4 | BPF_F_PSEUDO_HDR | 2) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, olen, nlen, l4 | 2) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, osport, nsport, l4 | 2) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, odport, ndport, l4 | 2))
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, osrc, nsrc, 4) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, odst, ndst, 4) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, otot, ntot, 2) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, ottl_proto, nttl_proto, 2))
		return -1;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + PAYLOAD_OFF > data_end)
		return -1;
	struct iphdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP_OFF;
	ip->saddr = nsrc;
	ip->daddr = ndst;
	ip->tot_len = ntot;
	ip->ttl = RELAY_TTL;
	udp->source = nsport;
	udp->dest = ndport;
	udp->len = nlen;
	return 0;
}

static __always_inline __be16 ttl_proto(__u8 ttl)
{
	return bpf_htons(((__u16)ttl << 8) | IPPROTO_UDP);
}

// Moves the `n`-byte payload at `poff` 4 bytes down (over a ChannelData header), 8
// bytes at a time, then the tail. One variable offset per access (q), constant ones
// from it: what the verifier can bound. Needs a linear skb (bpf_skb_pull_data).
static __always_inline int move_down(struct __sk_buff *skb, __u32 poff, __u32 n)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *p = data + poff;
	__u32 i;
	for (i = 0; i + 8 <= n && i < MAX_MOVE; i += 8) {
		__u8 *q = p + (i & 0x7ff);
		if ((void *)(q + 12) > data_end)
			return -1;
		__u64 w;
		__builtin_memcpy(&w, q + 4, 8);
		__builtin_memcpy(q, &w, 8);
	}
	for (__u32 k = 0; k < 8 && i < n; k++, i++) {
		__u8 *q = p + (i & 0x7ff);
		if ((void *)(q + 5) > data_end)
			return -1;
		q[0] = q[4];
	}
	return 0;
}

// Moves the `n`-byte payload at `poff` 4 bytes up, from its end (the odd tail first,
// then 8 at a time), and writes the ChannelData header in front of it.
static __always_inline int move_up(struct __sk_buff *skb, __u32 poff, __u32 n, __be16 chan)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *p = data + poff;
	__u32 words = n / 8, i = n;
	for (__u32 k = 0; k < 8 && i > words * 8; k++) {
		i--;
		__u8 *q = p + (i & 0x7ff);
		if ((void *)(q + 5) > data_end)
			return -1;
		q[4] = q[0];
	}
	for (__u32 k = 0; k < MAX_MOVE / 8 && i >= 8; k++) {
		i -= 8;
		__u8 *q = p + (i & 0x7ff);
		if ((void *)(q + 12) > data_end)
			return -1;
		__u64 w;
		__builtin_memcpy(&w, q, 8);
		__builtin_memcpy(q + 4, &w, 8);
	}
	if ((void *)(p + 4) > data_end)
		return -1;
	__be16 cd_len = bpf_htons(n);
	__builtin_memcpy(p, &chan, 2);
	__builtin_memcpy(p + 2, &cd_len, 2);
	return 0;
}

// client -> peer: drop the 4-byte ChannelData header of an `n`-byte payload.
static __always_inline int strip(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp,
				 __be16 cd_chan, __be16 cd_len, struct down_val *v, __u32 n)
{
	__be32 osrc = ip->saddr, odst = ip->daddr;
	__be16 osport = udp->source, odport = udp->dest, olen = udp->len, otot = ip->tot_len;
	__be16 ottl = ttl_proto(ip->ttl);
	__u16 ntot_h = 20 + 8 + n;
	__u32 stat = v->stat, ifindex = v->ifindex;
	__be32 nsrc = v->relay_ip, ndst = v->peer_ip;
	__be16 nsport = v->relay_port, ndport = v->peer_port;
	// The header's 4 bytes leave the UDP payload.
	__u32 cd = ((__u32)cd_chan) | ((__u32)cd_len << 16);
	if (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, cd, 0, BPF_F_MARK_MANGLED_0 | 4))
		return TC_ACT_SHOT;
	if (bpf_skb_pull_data(skb, skb->len))
		return TC_ACT_SHOT;
	if (move_down(skb, PAYLOAD_OFF, n))
		return TC_ACT_SHOT;
	if (bpf_skb_change_tail(skb, skb->len - 4, 0))
		return TC_ACT_SHOT;
	if (rewrite(skb, osrc, odst, osport, odport, olen, ottl, nsrc, ndst, nsport,
		    ndport, bpf_htons(8 + n), ttl_proto(RELAY_TTL), otot, bpf_htons(ntot_h)))
		return TC_ACT_SHOT;
	count(stat, n);
	count_path(PATH_TC_DOWN);
	return bpf_redirect_neigh(ifindex, NULL, 0, 0);
}

// peer -> client: put a ChannelData header in front of an `n`-byte payload.
static __always_inline int wrap(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp,
				struct up_val *v, __u32 n)
{
	__be32 osrc = ip->saddr, odst = ip->daddr;
	__be16 osport = udp->source, odport = udp->dest, olen = udp->len, otot = ip->tot_len;
	__be16 ottl = ttl_proto(ip->ttl);
	__u16 ntot_h = 20 + 8 + 4 + n;
	__u32 stat = v->stat, ifindex = v->ifindex;
	// The header makes the packet 4 bytes longer: one that would exceed the MTU of
	// the client's interface goes up (user space sends it, fragmented if need be).
	__u32 mtu_len = 0;
	if (bpf_check_mtu(skb, ifindex, &mtu_len, 4, 0))
		return TC_ACT_OK;
	__be32 nsrc = v->listener_ip, ndst = v->client_ip;
	__be16 nsport = v->listener_port, ndport = v->client_port;
	__be16 chan = v->channel, cd_len = bpf_htons(n);
	if (bpf_skb_change_tail(skb, skb->len + 4, 0))
		return TC_ACT_SHOT;
	__u32 cd = ((__u32)chan) | ((__u32)cd_len << 16);
	if (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, cd, BPF_F_MARK_MANGLED_0 | 4))
		return TC_ACT_SHOT;
	if (bpf_skb_pull_data(skb, skb->len))
		return TC_ACT_SHOT;
	if (move_up(skb, PAYLOAD_OFF, n, chan))
		return TC_ACT_SHOT;
	if (rewrite(skb, osrc, odst, osport, odport, olen, ottl, nsrc, ndst, nsport,
		    ndport, bpf_htons(8 + 4 + n), ttl_proto(RELAY_TTL), otot, bpf_htons(ntot_h)))
		return TC_ACT_SHOT;
	count(stat, n);
	count_path(PATH_TC_UP);
	return bpf_redirect_neigh(ifindex, NULL, 0, 0);
}

// IPv6: the header has no checksum; the UDP checksum is mandatory (RFC 8200 §8.1), and
// its pseudo-header changes (both addresses, the length) go in as one diff.
struct csum_words {
	__u32 w[9]; // source (4), destination (4), length
};

static __always_inline void words6(struct csum_words *c, const __u8 *src, const __u8 *dst, __be16 len)
{
	__builtin_memcpy(&c->w[0], src, 16);
	__builtin_memcpy(&c->w[4], dst, 16);
	c->w[8] = (__u32)len;
}

// Rewrites the IPv6 and UDP headers of a datagram whose payload has been moved.
static __always_inline int rewrite6(struct __sk_buff *skb, const __u8 *osrc, const __u8 *odst,
				    __be16 osport, __be16 odport, __be16 olen, const __u8 *nsrc,
				    const __u8 *ndst, __be16 nsport, __be16 ndport, __be16 nlen)
{
	struct csum_words o = {}, n = {};
	words6(&o, osrc, odst, olen);
	words6(&n, nsrc, ndst, nlen);
	__s64 pseudo = bpf_csum_diff(o.w, sizeof(o.w), n.w, sizeof(n.w), 0);
	if (pseudo < 0 || bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, 0, pseudo, BPF_F_MARK_MANGLED_0 | BPF_F_PSEUDO_HDR) ||
	    bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, olen, nlen, BPF_F_MARK_MANGLED_0 | 2) ||
	    bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, osport, nsport, BPF_F_MARK_MANGLED_0 | 2) ||
	    bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, odport, ndport, BPF_F_MARK_MANGLED_0 | 2))
		return -1;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + PAYLOAD6_OFF > data_end)
		return -1;
	struct ipv6hdr *ip6 = data + IP6_OFF;
	struct udphdr *udp = data + UDP6_OFF;
	__builtin_memcpy(&ip6->saddr, nsrc, 16);
	__builtin_memcpy(&ip6->daddr, ndst, 16);
	ip6->payload_len = nlen;
	ip6->hop_limit = RELAY_TTL;
	udp->source = nsport;
	udp->dest = ndport;
	udp->len = nlen;
	return 0;
}

static __always_inline int strip6(struct __sk_buff *skb, struct ipv6hdr *ip6, struct udphdr *udp,
				  __be16 cd_chan, __be16 cd_len, struct down6_val *v, __u32 n)
{
	__u8 osrc[16], odst[16], nsrc[16], ndst[16];
	__builtin_memcpy(osrc, &ip6->saddr, 16);
	__builtin_memcpy(odst, &ip6->daddr, 16);
	__builtin_memcpy(nsrc, v->relay_ip, 16);
	__builtin_memcpy(ndst, v->peer_ip, 16);
	__be16 osport = udp->source, odport = udp->dest, olen = udp->len;
	__be16 nsport = v->relay_port, ndport = v->peer_port;
	__u32 stat = v->stat, ifindex = v->ifindex;
	__u32 cd = ((__u32)cd_chan) | ((__u32)cd_len << 16);
	if (bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, cd, 0, BPF_F_MARK_MANGLED_0 | 4))
		return TC_ACT_SHOT;
	if (bpf_skb_pull_data(skb, skb->len) || move_down(skb, PAYLOAD6_OFF, n) ||
	    bpf_skb_change_tail(skb, skb->len - 4, 0))
		return TC_ACT_SHOT;
	if (rewrite6(skb, osrc, odst, osport, odport, olen, nsrc, ndst, nsport, ndport,
		     bpf_htons(8 + n)))
		return TC_ACT_SHOT;
	count(stat, n);
	count_path(PATH_TC_DOWN);
	return bpf_redirect_neigh(ifindex, NULL, 0, 0);
}

static __always_inline int wrap6(struct __sk_buff *skb, struct ipv6hdr *ip6, struct udphdr *udp,
				 struct up6_val *v, __u32 n)
{
	__u8 osrc[16], odst[16], nsrc[16], ndst[16];
	__builtin_memcpy(osrc, &ip6->saddr, 16);
	__builtin_memcpy(odst, &ip6->daddr, 16);
	__builtin_memcpy(nsrc, v->listener_ip, 16);
	__builtin_memcpy(ndst, v->client_ip, 16);
	__be16 osport = udp->source, odport = udp->dest, olen = udp->len;
	__be16 nsport = v->listener_port, ndport = v->client_port, chan = v->channel;
	__u32 stat = v->stat, ifindex = v->ifindex;
	__u32 mtu_len = 0;
	if (bpf_check_mtu(skb, ifindex, &mtu_len, 4, 0))
		return TC_ACT_OK;
	if (bpf_skb_change_tail(skb, skb->len + 4, 0))
		return TC_ACT_SHOT;
	__u32 cd = ((__u32)chan) | ((__u32)bpf_htons(n) << 16);
	if (bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, 0, cd, BPF_F_MARK_MANGLED_0 | 4))
		return TC_ACT_SHOT;
	if (bpf_skb_pull_data(skb, skb->len) || move_up(skb, PAYLOAD6_OFF, n, chan))
		return TC_ACT_SHOT;
	if (rewrite6(skb, osrc, odst, osport, odport, olen, nsrc, ndst, nsport, ndport,
		     bpf_htons(8 + 4 + n)))
		return TC_ACT_SHOT;
	count(stat, n);
	count_path(PATH_TC_UP);
	return bpf_redirect_neigh(ifindex, NULL, 0, 0);
}

SEC("classifier")
int stunner_channeldata(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + HDRS4 + 4 > data_end)
		return TC_ACT_OK;
	struct ethhdr *eth = data;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct match m = {};
		if (!match4(data, data_end, skb->len, &m))
			return TC_ACT_OK;
		struct iphdr *ip = data + IP_OFF;
		struct udphdr *udp = data + UDP_OFF;
		return m.down ? strip(skb, ip, udp, m.chan, m.cd_len, m.down, m.n)
			      : wrap(skb, ip, udp, m.up, m.n);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct match m = {};
		if (!match6(data, data_end, skb->len, &m) || data + HDRS6 + 4 > data_end)
			return TC_ACT_OK;
		struct ipv6hdr *ip6 = data + IP6_OFF;
		struct udphdr *udp = data + UDP6_OFF;
		return m.down ? strip6(skb, ip6, udp, m.chan, m.cd_len, m.down, m.n)
			      : wrap6(skb, ip6, udp, m.up, m.n);
	}
	return TC_ACT_OK;
}

// The XDP program (offload_engine XDP, or Auto on a NIC): same maps, earlier hook.
#include "xdp.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";
