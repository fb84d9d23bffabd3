/* Types shared by tcplife.bpf.c and the Rust side (which takes them from the skeleton). */
#ifndef BCC_PMDA_TCPLIFE_H
#define BCC_PMDA_TCPLIFE_H

#define TCPLIFE_COMM_LEN 16

/* What a ring buffer record reports. */
enum tcplife_kind {
	TCPLIFE_OPEN = 1,  /* an established session got its owner */
	TCPLIFE_CLOSE = 2, /* a tracked session reached TCP_CLOSE: final byte counts */
};

/* Bits of tcplife_session.flags and tcplife_event.flags. */
enum tcplife_flag {
	TCPLIFE_F_ESTABLISHED = 1, /* reached TCP_ESTABLISHED */
	TCPLIFE_F_OPEN_SENT = 2,   /* the OPEN record was sent (or lost) */
	TCPLIFE_F_PASSIVE = 4,     /* accepted (server) side */
	TCPLIFE_F_GUESSED = 8,     /* owner taken from a softirq context at close: may be wrong */
	TCPLIFE_F_OPEN_LOST = 16,  /* the OPEN record could not be reserved */
	TCPLIFE_F_FIN_SENT = 32,   /* went to FIN_WAIT1 or LAST_ACK: our FIN is queued */
};

/* One open session, keyed by the socket's kernel address. */
struct tcplife_session {
	__u64 start_ns; /* first state before FIN_WAIT1 (SYN_SENT or SYN_RECV) */
	__u64 rx;       /* payload received, last sampled (see payload_bytes) */
	__u64 tx;       /* payload sent and acked, last sampled */
	__u32 pid;      /* owner (thread group id); 0 while not known */
	__u32 flags;    /* enum tcplife_flag bits */
	char comm[TCPLIFE_COMM_LEN];
};

/* A ring buffer record. */
struct tcplife_event {
	__u64 sk;          /* socket address: with start_ns, the session's identity */
	__u64 start_ns;
	__u64 rx;          /* CLOSE: final payload received */
	__u64 tx;          /* CLOSE: final payload sent and acked */
	__u64 duration_ns; /* CLOSE: start_ns to TCP_CLOSE */
	__u32 pid;
	__u32 flags;
	__u16 kind;        /* enum tcplife_kind */
	__u16 family;      /* AF_INET or AF_INET6 */
	__u16 lport;
	__u16 dport;
	__u8 saddr[16];    /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char comm[TCPLIFE_COMM_LEN];
};

/* Per-CPU counters of what could not be followed. */
struct tcplife_stats {
	__u64 lost;      /* ring buffer records that could not be reserved */
	__u64 untracked; /* sessions not followed because the sessions map was full */
};

#endif
