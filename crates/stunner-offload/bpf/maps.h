// SPDX-License-Identifier: MIT OR GPL-2.0
//
// The maps shared by the TC and the XDP programs (one object, so one set of maps):
// the channels user space offloads, per-channel counters, and what the XDP program
// may redirect to.

#pragma once

// Keys and values are in network byte order, as in the packet.
struct down_key {
	__be32 client_ip;
	__be32 listener_ip;
	__be16 client_port;
	__be16 listener_port;
	__be16 channel;
	__u16 pad;
};

struct down_val {
	__be32 relay_ip;
	__be32 peer_ip;
	__be16 relay_port;
	__be16 peer_port;
	__u32 stat;    // index into `stats`
	__u32 ifindex; // the interface toward the peer (user space's route lookup)
};

struct up_key {
	__be32 peer_ip;
	__be32 relay_ip;
	__be16 peer_port;
	__be16 relay_port;
};

struct up_val {
	__be32 listener_ip;
	__be32 client_ip;
	__be16 listener_port;
	__be16 client_port;
	__be16 channel;
	__u16 pad;
	__u32 stat;
	__u32 ifindex; // the interface toward the client
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

#define MAX_ENTRIES 65536

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct down_key);
	__type(value, struct down_val);
} down SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct up_key);
	__type(value, struct up_val);
} up SEC(".maps");

// The same for IPv6 (RFC 8656 relays of either family; a channel whose client and peer
// are of different families is not offloaded).
struct down6_key {
	__u8 client_ip[16];
	__u8 listener_ip[16];
	__be16 client_port;
	__be16 listener_port;
	__be16 channel;
	__u16 pad;
};

struct down6_val {
	__u8 relay_ip[16];
	__u8 peer_ip[16];
	__be16 relay_port;
	__be16 peer_port;
	__u32 stat;
	__u32 ifindex;
};

struct up6_key {
	__u8 peer_ip[16];
	__u8 relay_ip[16];
	__be16 peer_port;
	__be16 relay_port;
};

struct up6_val {
	__u8 listener_ip[16];
	__u8 client_ip[16];
	__be16 listener_port;
	__be16 client_port;
	__be16 channel;
	__u16 pad;
	__u32 stat;
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct down6_key);
	__type(value, struct down6_val);
} down6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct up6_key);
	__type(value, struct up6_val);
} up6 SEC(".maps");

// Per-CPU packet and byte counters, one slot per direction of an offloaded channel.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * MAX_ENTRIES);
	__type(key, __u32);
	__type(value, struct counter);
} stats SEC(".maps");

static __always_inline void count(__u32 stat, __u32 bytes)
{
	struct counter *c = bpf_map_lookup_elem(&stats, &stat);
	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

// Datagrams relayed, by program and direction (for /status: which engine did the work).
#define PATH_XDP_DOWN 0
#define PATH_XDP_UP 1
#define PATH_TC_DOWN 2
#define PATH_TC_UP 3

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} paths SEC(".maps");

static __always_inline void count_path(__u32 path)
{
	__u64 *p = bpf_map_lookup_elem(&paths, &path);
	if (p)
		(*p)++;
}

// The interfaces the XDP program may redirect to (ifindex -> 1): those it is attached
// to in native mode. Redirecting into a veth whose other end has no NAPI drops the
// frame, and XDP cannot tell, so user space decides (see docs/OFFLOAD.md).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xdp_out SEC(".maps");
