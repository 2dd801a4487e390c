// SPDX-License-Identifier: Apache-2.0
/* The filter benchmark's in-kernel flood: the same 60-byte UDP frame as flood.c, sent by the kernel
 * itself. A four-instruction XDP program (redirect to IFNAME, the sender's end of the veth pair) runs
 * under BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: each run's frame really leaves through
 * IFNAME, and the veth delivers it to its peer as an XDP frame, as a NIC's driver would. Sending
 * costs a few tens of nanoseconds a packet, so the receiver, where the filters differ, is what
 * bounds the rate (with a socket sender, the sender's own stack was most of the time, and every
 * filter came out at the sender's speed). Runs in the sender's namespace (the redirect target is
 * looked up there), pinned to CPU; the receiving side's NAPI runs on the same CPU, after each batch
 * (or in that CPU's ksoftirqd).
 *
 * One BPF_PROG_TEST_RUN call per run, ended by SIGALRM after SECONDS (the kernel's loop stops at a
 * pending signal): each call sets up and tears down a page pool, which took ~28 ms here, so calls of
 * a fixed size either overshoot the time (10,000 iptables rules take ~20,000 packets a second) or
 * pay that many times. N is what IFNAME transmitted (its tx_packets), C the CPU's busy time from
 * /proc/stat, since part of the receiving runs in ksoftirqd rather than in this process. Prints the
 * line flood.c prints:
 *   sent N packets in T s (E send errors, C s on CPU)
 * Built by run.mjs into build/bench/filter-flood-xdp (links libbpf).
 *   filter-flood-xdp IFNAME SRC_MAC DST_MAC SRC DST PORT SECONDS MAX CPU */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define FRAME 60

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/** IFNAME's transmitted packets, from /proc/net/dev (this namespace's; /sys shows the mounter's) */
static long long tx_packets(const char *ifname)
{
	char line[512];
	long long n = -1;
	size_t len = strlen(ifname);
	FILE *f = fopen("/proc/net/dev", "r");

	while (f && fgets(line, sizeof(line), f)) {
		char *p = line;
		unsigned long long v[10];

		while (*p == ' ')
			p++;
		if (strncmp(p, ifname, len) || p[len] != ':')
			continue;
		/* receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets */
		if (sscanf(p + len + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) == 10)
			n = (long long)v[9];
	}
	if (f)
		fclose(f);
	if (n < 0) {
		fprintf(stderr, "filter-flood-xdp: no %s in /proc/net/dev\n", ifname);
		exit(1);
	}
	return n;
}

/** The CPU's busy time in seconds (/proc/stat: everything but idle and iowait) */
static double cpu_busy(int cpu)
{
	char want[16], line[256];
	double busy = -1;

	snprintf(want, sizeof(want), "cpu%d ", cpu);
	FILE *f = fopen("/proc/stat", "r");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long v[10] = { 0 };
		if (strncmp(line, want, strlen(want)))
			continue;
		sscanf(line + strlen(want), "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
		busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / sysconf(_SC_CLK_TCK);
	}
	if (f)
		fclose(f);
	return busy;
}

static void on_alarm(int sig)
{
	(void)sig; /* its only job: a pending signal, which ends the kernel's loop */
}

static void die(const char *what, int err)
{
	fprintf(stderr, "filter-flood-xdp: %s: %s\n", what, strerror(err));
	exit(1);
}

static void mac(const char *s, uint8_t *out)
{
	if (sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &out[0], &out[1], &out[2], &out[3], &out[4], &out[5]) != 6) {
		fprintf(stderr, "filter-flood-xdp: '%s' is not a MAC address\n", s);
		exit(2);
	}
}

static uint16_t ip_checksum(const uint8_t *h, int len)
{
	uint32_t sum = 0;

	for (int i = 0; i < len; i += 2)
		sum += (h[i] << 8) | h[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

int main(int argc, char **argv)
{
	if (argc != 10) {
		fprintf(stderr, "usage: filter-flood-xdp IFNAME SRC_MAC DST_MAC SRC DST PORT SECONDS MAX CPU\n");
		return 2;
	}
	unsigned ifindex = if_nametoindex(argv[1]);
	double seconds = atof(argv[7]);
	long long max = atoll(argv[8]);
	cpu_set_t set;
	uint8_t f[FRAME] = { 0 };
	struct in_addr src, dst;

	if (!ifindex)
		die(argv[1], errno);
	CPU_ZERO(&set);
	CPU_SET(atoi(argv[9]), &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("pin to the CPU", errno);
	if (inet_pton(AF_INET, argv[4], &src) != 1 || inet_pton(AF_INET, argv[5], &dst) != 1) {
		fprintf(stderr, "filter-flood-xdp: SRC and DST are IPv4 addresses\n");
		return 2;
	}

	/* Ethernet, IPv4 (20 bytes), UDP (8 bytes, no checksum), 18 bytes of payload */
	mac(argv[3], f);
	mac(argv[2], f + 6);
	f[12] = 0x08;
	uint8_t *ip = f + 14;
	ip[0] = 0x45;
	ip[2] = 0;
	ip[3] = FRAME - 14;
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	uint16_t c = ip_checksum(ip, 20);
	ip[10] = c >> 8;
	ip[11] = c & 0xff;
	uint8_t *udp = ip + 20;
	udp[0] = 12345 >> 8;
	udp[1] = 12345 & 0xff;
	udp[2] = atoi(argv[6]) >> 8;
	udp[3] = atoi(argv[6]) & 0xff;
	udp[5] = FRAME - 14 - 20;

	/* r1 = ifindex; r2 = 0; r0 = bpf_redirect(r1, r2); exit */
	struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_1, .imm = (int)ifindex },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_2, .imm = 0 },
		{ .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "ebpfnet_flood", "GPL", prog, sizeof(prog) / sizeof(prog[0]), NULL);
	if (fd < 0)
		die("load the redirect program", -fd);

	struct sigaction sa = { .sa_handler = on_alarm }; /* no SA_RESTART: the call must end */
	struct itimerval it = { .it_value = { .tv_sec = (long)seconds, .tv_usec = (long)((seconds - (long)seconds) * 1e6) } };
	int cpu = atoi(argv[9]);

	if (sigaction(SIGALRM, &sa, NULL))
		die("sigaction", errno);
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = f, .data_size_in = FRAME, .repeat = max > 0x7fffffff ? 0x7fffffff : (int)max,
		    .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = 64);
	long long tx0 = tx_packets(argv[1]);
	double b0 = cpu_busy(cpu), t0 = clock_s(CLOCK_MONOTONIC);

	if (setitimer(ITIMER_REAL, &it, NULL))
		die("setitimer", errno);
	int rc = bpf_prog_test_run_opts(fd, &o);
	double t1 = clock_s(CLOCK_MONOTONIC), b1 = cpu_busy(cpu);

	if (rc && rc != -EINTR)
		die("BPF_PROG_TEST_RUN (live frames)", -rc);
	printf("sent %lld packets in %.6f s (0 send errors, %.6f s on CPU)\n", tx_packets(argv[1]) - tx0, t1 - t0, b1 - b0);
	return 0;
}
