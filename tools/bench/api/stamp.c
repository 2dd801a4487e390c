// SPDX-License-Identifier: Apache-2.0
/* The paced sender of the API benchmark's PUT-to-effect part: one UDP datagram from SRC to
 * DST:PORT every GAP_US microseconds for SECONDS, each carrying its sequence number and the
 * CLOCK_MONOTONIC time it was sent (two little-endian u64). The receiver compares the last stamp
 * that got through with the time the PUT was sent (Node's hrtime is the same clock). Paced with
 * absolute-deadline sleeps, so it takes little CPU from the agent it measures. Prints one line:
 *   sent N packets (E send errors)
 * Built by run.mjs into build/bench/api-stamp.
 *   api-stamp SRC DST PORT GAP_US SECONDS */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct sockaddr_in src = { .sin_family = AF_INET }, dst = { .sin_family = AF_INET };
	uint64_t seq = 0, errors = 0, gap, end, next;
	struct timespec ts;
	uint64_t payload[2];
	int fd;

	if (argc != 6) {
		fprintf(stderr, "usage: %s SRC DST PORT GAP_US SECONDS\n", argv[0]);
		return 2;
	}
	if (inet_pton(AF_INET, argv[1], &src.sin_addr) != 1 || inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1) {
		fprintf(stderr, "api-stamp: bad address\n");
		return 2;
	}
	dst.sin_port = htons(atoi(argv[3]));
	gap = strtoull(argv[4], NULL, 10) * 1000;
	end = mono_ns() + strtoull(argv[5], NULL, 10) * 1000000000ull;
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		perror("api-stamp: socket");
		return 1;
	}
	for (next = mono_ns(); next < end; next += gap) {
		ts.tv_sec = next / 1000000000ull;
		ts.tv_nsec = next % 1000000000ull;
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		payload[0] = seq++;
		payload[1] = mono_ns();
		if (sendto(fd, payload, sizeof(payload), 0, (struct sockaddr *)&dst, sizeof(dst)) < 0)
			errors++;
		/* after a long stall (a busy machine), do not burst to catch up: resume the pace from now */
		if (mono_ns() > next + 50 * gap)
			next = mono_ns();
	}
	printf("sent %llu packets (%llu send errors)\n", (unsigned long long)seq, (unsigned long long)errors);
	return 0;
}
