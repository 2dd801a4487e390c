// SPDX-License-Identifier: Apache-2.0
/* The bounded flood for the filter benchmark's veth part: small UDP datagrams from SRC to
 * DST:PORT, sent with sendmmsg in batches, for SECONDS or until MAX packets, from one CPU.
 * On a veth pair the receiving side's whole path (XDP, tc, netfilter) runs on the sending CPU,
 * so pinning makes every contender pay on the same core. Prints one line:
 *   sent N packets in T s (E send errors, C s on CPU)
 * C is this process's CPU time, which includes the receive path run in its context (softirqs
 * raised by its own sends): well below T means other processes took the CPU during the run.
 * Built by run.mjs into build/bench/filter-flood.
 *   filter-flood SRC DST PORT SECONDS MAX CPU */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define PAYLOAD 18 /* 14 + 20 + 8 + 18 = 60 bytes: a minimum-size Ethernet frame without FCS */

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

static void die(const char *what)
{
	fprintf(stderr, "filter-flood: %s: %s\n", what, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	struct sockaddr_in src = { .sin_family = AF_INET }, dst = { .sin_family = AF_INET };
	static char payload[BATCH][PAYLOAD];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	unsigned long long sent = 0, errors = 0, max;
	double seconds, start, end, cpu0;
	cpu_set_t set;
	int fd, cpu;

	if (argc != 7) {
		fprintf(stderr, "usage: filter-flood SRC DST PORT SECONDS MAX CPU\n");
		return 2;
	}
	if (inet_pton(AF_INET, argv[1], &src.sin_addr) != 1 || inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1) {
		fprintf(stderr, "filter-flood: SRC and DST must be IPv4 addresses\n");
		return 2;
	}
	dst.sin_port = htons(atoi(argv[3]));
	seconds = atof(argv[4]);
	max = strtoull(argv[5], NULL, 10);
	cpu = atoi(argv[6]);

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("pin to the CPU");
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		die("socket");
	/* bind to the source the rules name, so no routing choice can change it */
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)))
		die("bind");
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)))
		die("connect");
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		memset(payload[i], 0x5a, PAYLOAD);
		iov[i].iov_base = payload[i];
		iov[i].iov_len = PAYLOAD;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	start = now();
	cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	end = start + seconds;
	while (sent < max) {
		unsigned int n = max - sent < BATCH ? (unsigned int)(max - sent) : BATCH;
		int r = sendmmsg(fd, msgs, n, 0);

		if (r < 0) {
			/* a full queue or an ICMP error queued by an earlier datagram: count, go on */
			if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED && errno != EINTR)
				die("sendmmsg");
			errors++;
		} else {
			sent += r;
		}
		/* the clock once per batch: cheap next to 64 trips through the stack */
		if (now() >= end)
			break;
	}
	printf("sent %llu packets in %.6f s (%llu send errors, %.6f s on CPU)\n", sent, now() - start, errors,
	       clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0);
	close(fd);
	return 0;
}
