// SPDX-License-Identifier: GPL-2.0
/* Atoll's tenant fast path: established TCP flows skip the bridge and br_netfilter.
 *
 * The first packets of a flow take the slow path (veth -> bridge -> br_netfilter with the security
 * groups -> bridge -> VXLAN or veth), where the nftables rules decide and conntrack records the
 * decision. Once conntrack in this host's namespace holds the flow as established, both directions
 * skip that path:
 *   from_port      an instance's host-side veth, ingress: to the other instance's NIC on this host
 *                  (bpf_redirect_peer), or tunnelled here to the port's host and out by the underlay
 *                  device (bpf_redirect_neigh);
 *   from_underlay  the device the peers' VXLAN packets arrive by, ingress: untunnelled here and into
 *                  the instance's NIC;
 *   from_overlay   a VXLAN device, ingress (packets that arrived by another device, and were
 *                  untunnelled by the kernel): into the instance's NIC.
 * Security groups keep their meaning because the rule set accepts every packet of an established
 * flow anyway ("ct state established,related accept" comes first): this only skips re-asking.
 * Everything else (ARP, UDP, ICMP, SYN, fragments, IP options, a frame whose source is not its
 * port's own MAC and address, a destination no map names) takes the slow path unchanged.
 *
 * conntrack does not see the packets that skip it, so the program keeps the entry's timeout the way
 * conntrack would: a packet with payload renews the established timeout, a FIN or RST shortens it to
 * the closing one (the last ACK renews nothing), and the FIN and RST themselves go the fast way too:
 * conntrack's window tracking, behind by the whole stream, would call them invalid.
 *
 * Decapsulation (from_underlay, on the device the peers' VXLAN packets arrive by): only a packet
 * from a peer host (what the overlay's nftables table lets in), to this host's underlay address and
 * VXLAN port, of a known VNI, carrying an established TCP flow to the address of an instance port on
 * this host. Everything else on that device (it is the host's, shared) goes on untouched to the next
 * filter and the stack, where the VXLAN device takes it as before.
 *
 * Maps (filled by the agent, atoll/agent/net/fastpath.py):
 * A network is named by its conntrack zone on this host (1 and up), which the agent chooses per bridge.
 *   ports:  host-side veth ifindex -> the port's network, MAC and IPv4 address
 *   vxlans: VXLAN device ifindex   -> its network
 *   vnis:   VNI                    -> its network
 *   peers:  underlay address of a peer host
 *   routes: peer -> the device and nexthop the host's routes reach it by
 *   macs:   (network, MAC)         -> where a frame to that MAC goes: a local port's host-side veth
 *                                     (with the port's address), or a port on another host (the
 *                                     network's VXLAN device, that host's address, the VNI)
 *   config: the two timeouts in ms, the VXLAN port, this host's underlay address (0: any)
 *   stats:  packets sent the fast way, per CPU
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define IPS_CONFIRMED (1 << 3)
#define IPS_SEEN_REPLY (1 << 1)
#define TCP_CONNTRACK_ESTABLISHED 3
#define CT_OPTS_SIZE 16 /* with the zone fields: kernels from 6.5 */
#define FRAG_MASK 0x3fff /* MF and the offset */
#define PASS TC_ACT_UNSPEC /* not for the fast path: the next filter, if any, and then the stack */
#define VXLAN_FLAG_VNI 0x08 /* the I flag: the VNI is valid */
#define SPORT_MIN 32768 /* the kernel's default range of local ports, which its VXLAN device uses */
#define SPORT_MAX 60999

/* Only the fields read here; CO-RE finds them in the running kernel's layout. */
struct ip_ct_tcp {
	__u8 state;
} __attribute__((preserve_access_index));

union nf_conntrack_proto {
	struct ip_ct_tcp tcp;
} __attribute__((preserve_access_index));

struct nf_conn {
	unsigned long status;
	union nf_conntrack_proto proto;
} __attribute__((preserve_access_index));

/* The lookup's options. */
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u16 ct_zone_id;
	__u8 ct_zone_dir;
	__u8 reserved[3];
};

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple, __u32 tuple__sz,
					 struct bpf_ct_opts *opts, __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;
extern int bpf_ct_change_timeout(struct nf_conn *ct, __u32 timeout) __ksym;

struct port {
	__u32 network;
	__u32 ip; /* network order */
	__u8 mac[6];
	__u8 pad[2];
};

struct mac_key {
	__u32 network;
	__u8 mac[6];
	__u8 pad[2];
};

struct dest {
	__u32 ifindex;
	__u32 local; /* 1: a local port's host-side veth (redirect into its peer); 0: a VXLAN device */
	__u32 ip;    /* a local port's address, or the underlay address of a remote port's host (network order) */
	__u32 vni;   /* a remote port's network's VNI */
};

struct route {
	__u32 ifindex; /* the device the host's routes send to a peer by */
	__u32 nexthop; /* the peer itself, or the gateway to it (network order) */
};

struct vxlanhdr {
	__u8 flags;
	__u8 reserved[3];
	__be32 vni; /* the VNI in the high 24 bits */
};

enum config_index { ESTABLISHED_MS, CLOSING_MS, VXLAN_PORT, UNDERLAY_IP, CONFIG_SIZE };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory for the entries there are, not for the maximum */
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct port);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory for the entries there are, not for the maximum */
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} vxlans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} vnis SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct route);
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory for the entries there are, not for the maximum */
	__uint(max_entries, 262144);
	__type(key, struct mac_key);
	__type(value, struct dest);
} macs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CONFIG_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

#define HEADERS (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr))
#define OUTER (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) + sizeof(struct vxlanhdr))
#define ENCAPSULATED (OUTER + HEADERS)

static __always_inline int same_mac(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b && *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

static __always_inline __u32 config_value(__u32 index)
{
	__u32 *value = bpf_map_lookup_elem(&config, &index);
	return value ? *value : 0;
}

/* Whether conntrack holds this packet's flow as established in the zone of its network (the zone the
 * nftables rules give the network's bridge); keeps the entry's timeout as conntrack would (see above). */
static __always_inline int established(struct __sk_buff *skb, struct iphdr *ip, struct tcphdr *tcp,
				       __u32 network)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_ct_opts opts = {
		.netns_id = -1 /* the device's */, .l4proto = IPPROTO_TCP, .ct_zone_id = network};
	struct nf_conn *ct;
	int ok;

	tuple.ipv4.saddr = ip->saddr;
	tuple.ipv4.daddr = ip->daddr;
	tuple.ipv4.sport = tcp->source;
	tuple.ipv4.dport = tcp->dest;
	ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv4), &opts, CT_OPTS_SIZE);
	if (!ct)
		return 0;
	ok = (ct->status & (IPS_CONFIRMED | IPS_SEEN_REPLY)) == (IPS_CONFIRMED | IPS_SEEN_REPLY) &&
	     ct->proto.tcp.state == TCP_CONNTRACK_ESTABLISHED;
	if (ok) {
		__u32 payload = bpf_ntohs(ip->tot_len) - ip->ihl * 4 - tcp->doff * 4;
		if (tcp->fin || tcp->rst)
			bpf_ct_change_timeout(ct, config_value(CLOSING_MS));
		else if (ip->tot_len == 0 /* BIG TCP */ || payload > 0)
			bpf_ct_change_timeout(ct, config_value(ESTABLISHED_MS));
	}
	bpf_ct_release(ct);
	return ok;
}

/* The Ethernet, IPv4 and TCP headers at ``offset`` of a frame that may take the fast path, or NULL;
 * the first ``need`` bytes are made linear (readable) first. */
static __always_inline struct ethhdr *parse(struct __sk_buff *skb, __u32 offset, __u32 need, struct iphdr **ip,
					    struct tcphdr **tcp)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth;

	if (data + need > end) {
		if (bpf_skb_pull_data(skb, need))
			return NULL;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	if (data + offset + HEADERS > end)
		return NULL;
	eth = data + offset;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	*ip = (void *)(eth + 1);
	if ((*ip)->ihl != 5 || (*ip)->protocol != IPPROTO_TCP || ((*ip)->frag_off & bpf_htons(FRAG_MASK)))
		return NULL;
	*tcp = (void *)(*ip + 1);
	if ((*tcp)->syn)
		return NULL;
	return eth;
}

/* The Internet checksum of a header whose partial sum is ``sum``. */
static __always_inline __u16 fold(__s64 sum)
{
	__u64 folded = (__u64)sum;

	folded = (folded & 0xffff) + (folded >> 16);
	folded = (folded & 0xffff) + (folded >> 16);
	folded = (folded & 0xffff) + (folded >> 16);
	return (__u16)~folded;
}

/* Tunnel the frame to the remote port's host ourselves, as the network's VXLAN device would (same
 * headers: the far host's device or from_underlay takes it alike), and hand it to the underlay device
 * with the nexthop's MAC from the neighbour table. Without a route to that host, or this host's
 * underlay address, the VXLAN device does it. */
static __always_inline int encapsulate(struct __sk_buff *skb, struct dest *dest, struct iphdr *inner_ip)
{
	struct {
		struct iphdr ip;
		struct udphdr udp;
		struct vxlanhdr vxlan;
	} outer = {}; /* 36 bytes: no padding between them (checked below) */
	struct bpf_redir_neigh nexthop = {.nh_family = 2 /* AF_INET */};
	__u32 source = config_value(UNDERLAY_IP);
	struct route *route = bpf_map_lookup_elem(&routes, &dest->ip);
	__u32 hash, length = skb->len + OUTER - sizeof(struct ethhdr);
	struct ethhdr inner;

	_Static_assert(sizeof(outer) == OUTER - sizeof(struct ethhdr), "outer headers");
	if (!source || !route || length > 0xffff)
		return bpf_redirect(dest->ifindex, 0);
	outer.ip.version = 4;
	outer.ip.ihl = 5;
	outer.ip.tos = inner_ip->tos & 0x3; /* ECN, as the kernel's tunnels copy it */
	outer.ip.ttl = 64;
	outer.ip.protocol = IPPROTO_UDP;
	outer.ip.id = (__u16)bpf_get_prandom_u32();
	outer.ip.saddr = source;
	outer.ip.daddr = dest->ip;
	outer.ip.tot_len = bpf_htons(length);
	outer.ip.check = fold(bpf_csum_diff(0, 0, (__be32 *)&outer.ip, sizeof(outer.ip), 0));
	/* The source port spreads flows over the underlay's paths, like the kernel's VXLAN device. */
	hash = bpf_get_hash_recalc(skb);
	outer.udp.source = bpf_htons(SPORT_MIN + (__u16)(((__u64)hash * (SPORT_MAX - SPORT_MIN)) >> 32));
	outer.udp.dest = bpf_htons(config_value(VXLAN_PORT));
	outer.udp.len = bpf_htons(length - sizeof(struct iphdr));
	outer.vxlan.flags = VXLAN_FLAG_VNI;
	outer.vxlan.vni = bpf_htonl(dest->vni << 8);
	if (bpf_skb_load_bytes(skb, 0, &inner, sizeof(inner)))
		return bpf_redirect(dest->ifindex, 0);
	/* Room after the Ethernet header for the outer IP, UDP and VXLAN headers and the inner Ethernet
	 * header; marked as a UDP tunnel, so GSO segments the inner TCP and repeats the outer headers.
	 * The segment size stays the inner flow's (its MTU leaves room for the tunnel). */
	if (bpf_skb_adjust_room(skb, OUTER, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
					BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(sizeof(struct ethhdr))))
		return bpf_redirect(dest->ifindex, 0);
	if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &outer, sizeof(outer), 0) ||
	    bpf_skb_store_bytes(skb, sizeof(struct ethhdr) + sizeof(outer), &inner, sizeof(inner), 0))
		return TC_ACT_SHOT; /* half made: cannot be sent either way */
	nexthop.ipv4_nh = route->nexthop;
	return bpf_redirect_neigh(route->ifindex, &nexthop, sizeof(nexthop), 0);
}

static __always_inline void count(void)
{
	__u32 zero = 0;
	__u64 *packets = bpf_map_lookup_elem(&stats, &zero);

	if (packets)
		*packets += 1;
}

/* Where frames to this MAC on this network go, or NULL. */
static __always_inline struct dest *destination(__u32 network, const __u8 *mac)
{
	struct mac_key key = {.network = network};

	__builtin_memcpy(key.mac, mac, 6);
	return bpf_map_lookup_elem(&macs, &key);
}

/* On an instance's host-side veth, ingress: frames the instance sent. */
SEC("tc")
int from_port(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct tcphdr *tcp;
	struct iphdr *ip;
	struct ethhdr *eth;
	struct port *port;
	struct dest *dest;

	port = bpf_map_lookup_elem(&ports, &ifindex);
	if (!port)
		return PASS;
	eth = parse(skb, 0, HEADERS, &ip, &tcp);
	if (!eth || !same_mac(eth->h_source, port->mac) || ip->saddr != port->ip)
		return PASS; /* not ours to judge: the anti-spoofing table drops a forged frame */
	dest = destination(port->network, eth->h_dest);
	if (!dest || dest->ifindex == ifindex || !established(skb, ip, tcp, port->network))
		return PASS;
	count();
	if (dest->local)
		return bpf_redirect_peer(dest->ifindex, 0);
	return encapsulate(skb, dest, ip);
}

/* On a VXLAN device, ingress: frames from other hosts, after decapsulation. */
SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct tcphdr *tcp;
	struct iphdr *ip;
	struct ethhdr *eth;
	struct dest *dest;
	__u32 *network;

	network = bpf_map_lookup_elem(&vxlans, &ifindex);
	if (!network)
		return PASS;
	eth = parse(skb, 0, HEADERS, &ip, &tcp);
	if (!eth)
		return PASS;
	dest = destination(*network, eth->h_dest);
	if (!dest || !dest->local || !established(skb, ip, tcp, *network))
		return PASS;
	count();
	return bpf_redirect_peer(dest->ifindex, 0);
}

/* The VNI's network, if this frame is VXLAN from a peer host to this one, or 0. */
static __always_inline __u32 tunnelled(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	struct vxlanhdr *vxlan = (void *)(udp + 1);
	__u32 vni, local, *network;

	if ((void *)(vxlan + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(FRAG_MASK)) ||
	    udp->dest != bpf_htons(config_value(VXLAN_PORT)) || !(vxlan->flags & VXLAN_FLAG_VNI))
		return 0;
	local = config_value(UNDERLAY_IP);
	if ((local && ip->daddr != local) || !bpf_map_lookup_elem(&peers, &ip->saddr))
		return 0;
	vni = bpf_ntohl(vxlan->vni) >> 8;
	network = bpf_map_lookup_elem(&vnis, &vni);
	return network ? *network : 0;
}

/* On the device the peers' VXLAN packets arrive by, ingress: decapsulate what goes straight into an
 * instance of this host. */
SEC("tc")
int from_underlay(struct __sk_buff *skb)
{
	struct ethhdr inner;
	struct tcphdr *tcp;
	struct iphdr *ip;
	struct ethhdr *eth;
	struct dest *dest;
	__u32 network;
	void *data;

	/* The outer headers first: most of what this device receives is not ours. */
	data = (void *)(long)skb->data;
	if (data + OUTER > (void *)(long)skb->data_end && bpf_skb_pull_data(skb, OUTER))
		return PASS;
	network = tunnelled(skb);
	if (!network)
		return PASS;
	eth = parse(skb, OUTER, ENCAPSULATED, &ip, &tcp);
	if (!eth)
		return PASS;
	dest = destination(network, eth->h_dest);
	/* To the port's own address only: the decapsulated packet keeps its tunnel GSO flags, which the
	 * instance's stack ignores when it delivers locally but would trip over if it forwarded it. */
	if (!dest || !dest->local || ip->daddr != dest->ip || !established(skb, ip, tcp, network))
		return PASS;
	inner = *eth;
	/* Remove OUTER bytes after the outer Ethernet header (the outer IP, UDP and VXLAN headers, and
	 * the inner Ethernet header), then put the inner Ethernet header where the outer one was. The
	 * segment size stays the inner flow's. */
	if (bpf_skb_adjust_room(skb, -(__s32)OUTER, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
		return PASS;
	data = (void *)(long)skb->data;
	if (data + sizeof(inner) > (void *)(long)skb->data_end)
		return TC_ACT_SHOT; /* cannot happen: the inner headers were there */
	__builtin_memcpy(data, &inner, sizeof(inner));
	/* A checksum the NIC verified was the outer one. */
	bpf_csum_level(skb, BPF_CSUM_LEVEL_DEC);
	count();
	return bpf_redirect_peer(dest->ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
