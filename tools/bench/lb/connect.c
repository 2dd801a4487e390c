// SPDX-License-Identifier: Apache-2.0
/* The load-balancer benchmark's client and server, in C so that the measured time is the kernel's
 * (socket hooks, netfilter, TCP) and not a runtime's. run.mjs compiles it into build/bench/.
 *
 *   lb-connect serve PORT
 *       accept and close on 0.0.0.0:PORT until killed (one thread: the client is one thread too)
 *   lb-connect connect HOST PORT MILLISECONDS MAX WARMUP
 *       connect()+close() in a loop for MILLISECONDS (or MAX calls) after WARMUP untimed ones; prints
 *       one JSON line: {"n":..,"p50_ns":..,"p99_ns":..,"mean_ns":..,"errors":..,"error":"..."}
 *
 * Each socket is closed with SO_LINGER 0 (an RST, no TIME_WAIT), so a long run never runs out of
 * ephemeral ports, and a 1 s send timeout turns a connect that nothing answers into an error
 * instead of a two-minute wait. */
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

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int serve(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);

	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) || bind(s, (void *)&a, sizeof(a)) || listen(s, 4096)) {
		perror("lb-connect: serve");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int c = accept(s, NULL, NULL);

		if (c >= 0)
			close(c);
	}
}

/* One connect()+close(); returns the nanoseconds it took, or 0 with errno set. */
static uint64_t once(const struct sockaddr_in *dst)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct timeval tv = { .tv_sec = 1 };
	uint64_t t0, t1;
	int s = socket(AF_INET, SOCK_STREAM, 0), rc, e;

	if (s < 0)
		return 0;
	setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	t0 = now_ns();
	rc = connect(s, (const void *)dst, sizeof(*dst));
	e = errno;
	close(s);
	t1 = now_ns();
	if (rc) {
		errno = e;
		return 0;
	}
	return t1 - t0 ? t1 - t0 : 1;
}

static int run(const char *host, int port, long ms, long max, long warmup)
{
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(port) };
	uint64_t *lat, sum = 0, end;
	long n = 0, errors = 0;
	const char *first = NULL;

	if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
		fprintf(stderr, "lb-connect: %s is not an IPv4 address\n", host);
		return 2;
	}
	lat = calloc(max, sizeof(*lat));
	if (!lat)
		return 1;
	for (long i = 0; i < warmup; i++) {
		if (!once(&dst)) {
			errors++;
			first = first ? first : strerror(errno);
			if (errors > 3)
				break;
		}
	}
	end = now_ns() + (uint64_t)ms * 1000000ull;
	while (n < max && now_ns() < end && errors <= 3) {
		uint64_t t = once(&dst);

		if (!t) {
			errors++;
			first = first ? first : strerror(errno);
			continue;
		}
		lat[n++] = t;
		sum += t;
	}
	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("{\"n\":%ld,\"p50_ns\":%llu,\"p99_ns\":%llu,\"mean_ns\":%llu,\"errors\":%ld,\"error\":\"%s\"}\n", n,
	       n ? (unsigned long long)lat[n / 2] : 0ull, n ? (unsigned long long)lat[(n * 99) / 100] : 0ull,
	       n ? (unsigned long long)(sum / n) : 0ull, errors, first ? first : "");
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]));
	if (argc == 7 && !strcmp(argv[1], "connect"))
		return run(argv[2], atoi(argv[3]), atol(argv[4]), atol(argv[5]), atol(argv[6]));
	fprintf(stderr, "usage: lb-connect serve PORT | lb-connect connect HOST PORT MILLISECONDS MAX WARMUP\n");
	return 2;
}
