// SPDX-License-Identifier: Apache-2.0
/* The Kubernetes benchmark's backend and client, in C so that what is timed is the kernel's path
 * and the agent's work, not a runtime's. run.mjs compiles it into build/bench/.
 *
 *   k8s-probe serve PORT
 *       accept on 0.0.0.0:PORT; write the local address the client reached ("10.250.0.3\n"), close.
 *       One process answers for every backend address of its namespace.
 *   k8s-probe watch HOST PORT
 *       per line read on stdin (an address): prints "go", then connects to HOST:PORT until the reply
 *       names that address; prints "seen MONO_NS TRIES ERRORS" (CLOCK_MONOTONIC, as Node's hrtime)
 *   k8s-probe connect HOST PORT MILLISECONDS [GAP_US]
 *       connect + read the reply + close in a loop for MILLISECONDS, GAP_US apart (a paced client
 *       leaves the machine's two cores to the agent and the server); prints one JSON line:
 *       {"n":..,"p50_ns":..,"p99_ns":..,"errors":..}
 *
 * The client closes with SO_LINGER 0 (no TIME_WAIT: long runs never run out of ports) and has a 1 s
 * timeout, so a connect nothing answers is an error, not a two-minute wait. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
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

	signal(SIGPIPE, SIG_IGN);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) || bind(s, (void *)&a, sizeof(a)) || listen(s, 4096)) {
		perror("k8s-probe: serve");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		struct sockaddr_in l;
		socklen_t len = sizeof(l);
		char buf[32];
		int c = accept(s, NULL, NULL), n;

		if (c < 0)
			continue;
		if (!getsockname(c, (void *)&l, &len) && inet_ntop(AF_INET, &l.sin_addr, buf, sizeof(buf) - 1)) {
			n = strlen(buf);
			buf[n++] = '\n';
			send(c, buf, n, MSG_NOSIGNAL);
		}
		close(c);
	}
}

/* One connect + read of the reply into `reply`; 0 on success, else -1 with errno set. */
static int once(const struct sockaddr_in *dst, char *reply, size_t cap)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct timeval tv = { .tv_sec = 1 };
	int s = socket(AF_INET, SOCK_STREAM, 0), e;
	ssize_t got = 0, r;

	if (s < 0)
		return -1;
	setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(s, (const void *)dst, sizeof(*dst))) {
		e = errno;
		close(s);
		errno = e;
		return -1;
	}
	while ((size_t)got < cap - 1 && (r = read(s, reply + got, cap - 1 - got)) > 0) {
		got += r;
		if (reply[got - 1] == '\n')
			break;
	}
	e = errno;
	close(s);
	if (got <= 0) {
		errno = got < 0 ? e : ECONNRESET;
		return -1;
	}
	reply[got] = 0;
	if (reply[got - 1] == '\n')
		reply[got - 1] = 0;
	return 0;
}

static int parse_dst(const char *host, const char *port, struct sockaddr_in *dst)
{
	memset(dst, 0, sizeof(*dst));
	dst->sin_family = AF_INET;
	dst->sin_port = htons(atoi(port));
	if (inet_pton(AF_INET, host, &dst->sin_addr) != 1) {
		fprintf(stderr, "k8s-probe: %s is not an IPv4 address\n", host);
		return -1;
	}
	return 0;
}

static int watch(const struct sockaddr_in *dst)
{
	char want[64], reply[64];
	struct timespec pause = { .tv_nsec = 20000 };

	while (fgets(want, sizeof(want), stdin)) {
		unsigned long tries = 0, errors = 0;

		want[strcspn(want, "\n")] = 0;
		printf("go\n");
		fflush(stdout);
		for (;;) {
			tries++;
			if (once(dst, reply, sizeof(reply)))
				errors++;
			else if (!strcmp(reply, want))
				break;
			/* a short pause: the agent and the API server share the machine's two cores */
			nanosleep(&pause, NULL);
		}
		printf("seen %llu %lu %lu\n", (unsigned long long)now_ns(), tries, errors);
		fflush(stdout);
	}
	return 0;
}

static int loop(const struct sockaddr_in *dst, long ms, long gap_us)
{
	size_t cap = 1 << 20, n = 0;
	uint64_t *lat = malloc(cap * sizeof(*lat)), end = now_ns() + (uint64_t)ms * 1000000ull;
	unsigned long errors = 0;
	char reply[64];

	if (!lat)
		return 1;
	while (now_ns() < end && n < cap) {
		uint64_t t0 = now_ns();

		if (once(dst, reply, sizeof(reply)))
			errors++;
		else
			lat[n++] = now_ns() - t0;
		if (gap_us > 0) {
			struct timespec gap = { .tv_sec = gap_us / 1000000, .tv_nsec = (gap_us % 1000000) * 1000 };

			nanosleep(&gap, NULL);
		}
	}
	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("{\"n\":%zu,\"p50_ns\":%llu,\"p99_ns\":%llu,\"errors\":%lu}\n", n, n ? (unsigned long long)lat[(n - 1) / 2] : 0ull,
	       n ? (unsigned long long)lat[(size_t)((n - 1) * 0.99)] : 0ull, errors);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in dst;

	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]));
	if (argc == 4 && !strcmp(argv[1], "watch"))
		return parse_dst(argv[2], argv[3], &dst) ? 2 : watch(&dst);
	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "connect"))
		return parse_dst(argv[2], argv[3], &dst) ? 2 : loop(&dst, atol(argv[4]), argc == 6 ? atol(argv[5]) : 0);
	fprintf(stderr, "usage: k8s-probe serve PORT | watch HOST PORT | connect HOST PORT MS [GAP_US]\n");
	return 2;
}
