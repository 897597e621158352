// SPDX-License-Identifier: MIT OR GPL-2.0
//
// XDP offload of ChannelData: the maps and the rewrite of the TC program, before the
// kernel has built an skb. The headers move instead of the payload
// (bpf_xdp_adjust_head by +4 to strip the ChannelData header, -4 to add one), and the
// next hop (egress interface, MAC addresses) comes from bpf_fib_lookup.
//
// Whatever this program cannot finish goes on unchanged to the TC program, which user
// space attaches to every interface this one is on; nothing is dropped here:
//  - the fib lookup fails: forwarding off on the interface (the helper requires it),
//    no neighbour entry yet (TC's bpf_redirect_neigh resolves it, and the next packet
//    finds it), a packet over the egress MTU, ...;
//  - the egress interface is not in `xdp_out` (see maps.h);
//  - the UDP checksum is a CHECKSUM_PARTIAL one: a local sender (a pod on this node,
//    through a veth) left the checksum to the device, the field holds only the
//    pseudo-header sum, and an xdp frame does not carry that state; the skb TC sees
//    does.

#ifndef AF_INET6
#define AF_INET6 10
#endif

static __always_inline __u16 fold(__u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

// The UDP checksum after the changes `from` -> `to` (RFC 1624), 0 kept as 0 (IPv4: no
// checksum). Negative if the helper refused.
static __always_inline int udp_check(__be16 check, void *from, void *to, __u32 size)
{
	if (!check)
		return 0;
	__s64 d = bpf_csum_diff(from, size, to, size, (__u16)~check);
	if (d < 0)
		return -1;
	__u16 c = ~fold((__u64)d);
	return c ? c : 0xffff;
}

// A CHECKSUM_PARTIAL datagram: the field holds the folded pseudo-header sum, as the
// stack leaves it for the device to complete. (A complete checksum equal to that by
// chance, 1 in 65536, only sends that datagram the slower way.)
struct pseudo4 {
	__be32 saddr;
	__be32 daddr;
	__be16 proto;
	__be16 len;
};

static __always_inline int partial4(const struct iphdr *ip, const struct udphdr *udp)
{
	if (!udp->check)
		return 0;
	struct pseudo4 p = {ip->saddr, ip->daddr, bpf_htons(IPPROTO_UDP), udp->len};
	__s64 s = bpf_csum_diff(NULL, 0, (void *)&p, sizeof(p), 0);
	return s < 0 || fold((__u64)s) == udp->check;
}

struct pseudo6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 z1;
	__be16 len;
	__be16 z2;
	__be16 proto;
};

static __always_inline int partial6(const struct ipv6hdr *ip6, const struct udphdr *udp)
{
	struct pseudo6 p = {.len = udp->len, .proto = bpf_htons(IPPROTO_UDP)};
	__builtin_memcpy(p.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p.daddr, &ip6->daddr, 16);
	__s64 s = bpf_csum_diff(NULL, 0, (void *)&p, sizeof(p), 0);
	return s < 0 || fold((__u64)s) == udp->check;
}

// The checksummed fields that change: pseudo-header addresses and length, the UDP
// length and ports, and the ChannelData header (zeros where there is none).
struct delta4 {
	__be32 saddr;
	__be32 daddr;
	__be16 plen;
	__be16 ulen;
	__be16 sport;
	__be16 dport;
	__be16 chan;
	__be16 cd_len;
};

struct delta6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 plen;
	__be16 ulen;
	__be16 sport;
	__be16 dport;
	__be16 chan;
	__be16 cd_len;
};

// The next hop of a datagram leaving from `src` to `dst`, looked up as if it had come
// in on the ingress interface; 0 if XDP cannot send it.
static __always_inline int next_hop4(struct xdp_md *ctx, struct bpf_fib_lookup *f, __be32 src,
				     __be32 dst, __be16 sport, __be16 dport, __u16 tot_len)
{
	f->family = AF_INET;
	f->l4_protocol = IPPROTO_UDP;
	f->sport = sport;
	f->dport = dport;
	f->tot_len = tot_len;
	f->ifindex = ctx->ingress_ifindex;
	f->ipv4_src = src;
	f->ipv4_dst = dst;
	if (bpf_fib_lookup(ctx, f, sizeof(*f), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	return bpf_map_lookup_elem(&xdp_out, &f->ifindex) != NULL;
}

static __always_inline int next_hop6(struct xdp_md *ctx, struct bpf_fib_lookup *f, const __u8 *src,
				     const __u8 *dst, __be16 sport, __be16 dport, __u16 tot_len)
{
	f->family = AF_INET6;
	f->l4_protocol = IPPROTO_UDP;
	f->sport = sport;
	f->dport = dport;
	f->tot_len = tot_len;
	f->ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(f->ipv6_src, src, 16);
	__builtin_memcpy(f->ipv6_dst, dst, 16);
	if (bpf_fib_lookup(ctx, f, sizeof(*f), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	return bpf_map_lookup_elem(&xdp_out, &f->ifindex) != NULL;
}

// Writes the Ethernet header of the next hop at the (moved) start of the frame.
static __always_inline void write_eth(struct ethhdr *eth, const struct bpf_fib_lookup *f, __u16 proto)
{
	__builtin_memcpy(eth->h_dest, f->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, f->smac, ETH_ALEN);
	eth->h_proto = bpf_htons(proto);
}

// An IPv4 header with new addresses, length and TTL, and its checksum.
static __always_inline int new_ip4(struct iphdr *nip, const struct iphdr *ip, __be32 src, __be32 dst,
				   __u16 tot_len)
{
	__builtin_memcpy(nip, ip, sizeof(*nip));
	nip->tot_len = bpf_htons(tot_len);
	nip->ttl = RELAY_TTL;
	nip->saddr = src;
	nip->daddr = dst;
	nip->check = 0;
	__s64 s = bpf_csum_diff(NULL, 0, (void *)nip, sizeof(*nip), 0);
	if (s < 0)
		return -1;
	nip->check = ~fold((__u64)s);
	return 0;
}

// Writes the UDP header (and, wrapping, the ChannelData header `cd`: channel and length,
// 4 bytes) of a frame whose IP header is in place, counts it and sends it.
static __always_inline int send_out(struct udphdr *udp, __be16 sport, __be16 dport, __be16 ulen,
				    __u16 check, const __be16 *cd, __u32 stat, __u32 n, __u32 path,
				    __u32 ifindex)
{
	udp->source = sport;
	udp->dest = dport;
	udp->len = ulen;
	udp->check = check;
	if (cd)
		__builtin_memcpy((__u8 *)(udp + 1), cd, 4);
	count(stat, n);
	count_path(path);
	return bpf_redirect(ifindex, 0);
}

// IPv4, both ways: `v` non-NULL strips (client -> peer), else `uv` wraps.
static __always_inline int xdp_relay4(struct xdp_md *ctx, struct down_val *v, struct up_val *uv,
				      __u32 n)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	if (data + HDRS4 + 4 > data_end)
		return XDP_PASS;
	struct iphdr *ip = data + ETH_HLEN;
	struct udphdr *udp = data + ETH_HLEN + 20;
	if (partial4(ip, udp))
		return XDP_PASS;
	struct bpf_fib_lookup f = {};
	struct delta4 o = {ip->saddr, ip->daddr, udp->len, udp->len, udp->source, udp->dest};
	struct delta4 nd = {};
	__u32 stat, path;
	int grow;
	if (v) {
		__builtin_memcpy(&o.chan, (__u8 *)(udp + 1), 4);
		nd = (struct delta4){v->relay_ip, v->peer_ip, bpf_htons(8 + n), bpf_htons(8 + n),
				     v->relay_port, v->peer_port};
		stat = v->stat;
		path = PATH_XDP_DOWN;
		grow = -4;
	} else {
		nd = (struct delta4){uv->listener_ip, uv->client_ip, bpf_htons(12 + n), bpf_htons(12 + n),
				     uv->listener_port, uv->client_port, uv->channel, bpf_htons(n)};
		stat = uv->stat;
		path = PATH_XDP_UP;
		grow = 4;
	}
	if (!next_hop4(ctx, &f, nd.saddr, nd.daddr, nd.sport, nd.dport, 20 + bpf_ntohs(nd.ulen)))
		return XDP_PASS;
	int check = udp_check(udp->check, &o, &nd, sizeof(o));
	struct iphdr nip;
	if (check < 0 || new_ip4(&nip, ip, nd.saddr, nd.daddr, 20 + bpf_ntohs(nd.ulen)))
		return XDP_PASS;
	// From here on the frame is changed: no way back to XDP_PASS.
	if (bpf_xdp_adjust_head(ctx, -grow))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HDRS4 + 4 > data_end)
		return XDP_ABORTED;
	write_eth(data, &f, ETH_P_IP);
	__builtin_memcpy(data + ETH_HLEN, &nip, 20);
	udp = data + ETH_HLEN + 20;
	return send_out(udp, nd.sport, nd.dport, nd.ulen, check, v ? NULL : &nd.chan, stat, n, path,
			f.ifindex);
}

// IPv6, both ways, as xdp_relay4.
static __always_inline int xdp_relay6(struct xdp_md *ctx, struct down6_val *v, struct up6_val *uv,
				      __u32 n)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	if (data + HDRS6 + 4 > data_end)
		return XDP_PASS;
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	struct udphdr *udp = data + ETH_HLEN + 40;
	if (partial6(ip6, udp))
		return XDP_PASS;
	struct bpf_fib_lookup f = {};
	struct delta6 o = {.plen = udp->len, .ulen = udp->len, .sport = udp->source, .dport = udp->dest};
	__builtin_memcpy(o.saddr, &ip6->saddr, 16);
	__builtin_memcpy(o.daddr, &ip6->daddr, 16);
	struct delta6 nd = {};
	__u32 stat, path;
	int grow;
	if (v) {
		__builtin_memcpy(&o.chan, (__u8 *)(udp + 1), 4);
		__builtin_memcpy(nd.saddr, v->relay_ip, 16);
		__builtin_memcpy(nd.daddr, v->peer_ip, 16);
		nd.sport = v->relay_port;
		nd.dport = v->peer_port;
		nd.plen = nd.ulen = bpf_htons(8 + n);
		stat = v->stat;
		path = PATH_XDP_DOWN;
		grow = -4;
	} else {
		__builtin_memcpy(nd.saddr, uv->listener_ip, 16);
		__builtin_memcpy(nd.daddr, uv->client_ip, 16);
		nd.sport = uv->listener_port;
		nd.dport = uv->client_port;
		nd.plen = nd.ulen = bpf_htons(12 + n);
		nd.chan = uv->channel;
		nd.cd_len = bpf_htons(n);
		stat = uv->stat;
		path = PATH_XDP_UP;
		grow = 4;
	}
	if (!next_hop6(ctx, &f, nd.saddr, nd.daddr, nd.sport, nd.dport, 40 + bpf_ntohs(nd.ulen)))
		return XDP_PASS;
	// IPv6 UDP always has a checksum (RFC 8200 §8.1); match6 took only those.
	int check = udp_check(udp->check, &o, &nd, sizeof(o));
	if (check <= 0)
		return XDP_PASS;
	struct ipv6hdr nip;
	__builtin_memcpy(&nip, ip6, sizeof(nip));
	nip.payload_len = nd.ulen;
	nip.hop_limit = RELAY_TTL;
	__builtin_memcpy(&nip.saddr, nd.saddr, 16);
	__builtin_memcpy(&nip.daddr, nd.daddr, 16);
	// From here on the frame is changed: no way back to XDP_PASS.
	if (bpf_xdp_adjust_head(ctx, -grow))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HDRS6 + 4 > data_end)
		return XDP_ABORTED;
	write_eth(data, &f, ETH_P_IPV6);
	__builtin_memcpy(data + ETH_HLEN, &nip, 40);
	udp = data + ETH_HLEN + 40;
	return send_out(udp, nd.sport, nd.dport, nd.ulen, check, v ? NULL : &nd.chan, stat, n, path,
			f.ifindex);
}

SEC("xdp")
int stunner_channeldata_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	if (data + ETH_HLEN > data_end)
		return XDP_PASS;
	struct ethhdr *eth = data;
	__u32 len = bpf_xdp_get_buff_len(ctx);
	// One match per family, each branch returning: the verifier does not take the
	// EtherType read twice to be the same, so a shared one could reach the IPv6 rewrite
	// holding an IPv4 map value.
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct match m = {};
		return match4(data, data_end, len, &m) ? xdp_relay4(ctx, m.down, m.up, m.n) : XDP_PASS;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct match m = {};
		return match6(data, data_end, len, &m) ? xdp_relay6(ctx, m.down, m.up, m.n) : XDP_PASS;
	}
	return XDP_PASS;
}
