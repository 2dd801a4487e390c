// SPDX-License-Identifier: Apache-2.0
/* The traced workload of the trace benchmark: N mkdir+rmdir pairs on one path (on tmpfs, so the
 * file system costs little and the tracer's share shows), timed from inside, so process start-up
 * is not part of the figure. glibc's mkdir() is the mkdir syscall on x86-64 and mkdirat on arm64;
 * the tracers hook both. Prints one JSON line: {"pairs":N,"ns":T,"pid":P}; on failure one
 * `mkdir-loop: op: detail` line on stderr and exit 1.
 *
 *   mkdir-loop N PATH */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned long long t0, t1;
	long n;

	if (argc != 3 || (n = strtol(argv[1], NULL, 10)) < 1) {
		fprintf(stderr, "mkdir-loop: usage: mkdir-loop N PATH\n");
		return 1;
	}
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		if (mkdir(argv[2], 0755)) {
			fprintf(stderr, "mkdir-loop: mkdir %s: %s\n", argv[2], strerror(errno));
			return 1;
		}
		if (rmdir(argv[2])) {
			fprintf(stderr, "mkdir-loop: rmdir %s: %s\n", argv[2], strerror(errno));
			return 1;
		}
	}
	t1 = now_ns();
	printf("{\"pairs\":%ld,\"ns\":%llu,\"pid\":%d}\n", n, t1 - t0, (int)getpid());
	return 0;
}
