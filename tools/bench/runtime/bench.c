// SPDX-License-Identifier: Apache-2.0
/* The C half of the runtime benchmark: the same work run.mjs does from TypeScript, done through
 * libbpf directly, so the TypeScript numbers have a floor to be compared with. It loads
 * build/bpf/selftest.bpf.o with st_config.emit_events = 1 and then serves run.mjs one command per
 * line on stdin, answering each with one JSON line on stdout:
 *   map START N   N update+lookup pairs on st_rules, pair i using bench_key(i) and cookie i
 *   ring          fill st_events with one BPF_PROG_TEST_RUN of repeat = R (one event per run),
 *                 then drain it with ring_buffer__consume; only the drain is timed
 * A process that stays up lets run.mjs alternate C and TypeScript in slices of milliseconds, so
 * the swings of a shared machine fall on both sides alike. On failure: one `runtime-c: op: detail`
 * line on stderr and exit 1. By hand: printf 'map 0 100000\nring\n' | runtime-c OBJECT 100000
 *
 *   runtime-c OBJECT R
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

/* The generated header is written for the BPF side; these are the definitions bpf_helpers.h gives
 * its map macros, so user space gets the very same structs (maps/selftest.json) without a second,
 * hand-written copy. The map definitions it also declares become unused user-space globals. */
#define SEC(name)
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#include "gen/selftest.maps.h"

#define XDP_PASS 2

static void die(const char *op, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "runtime-c: %s: ", op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Must match benchKey() in run.mjs. 7919 is odd, so i -> i * 7919 mod 1024 visits all 1024 slots
 * (st_rules holds exactly 1024) in a scattered order rather than one hash bucket after another. */
static uint32_t bench_key(uint64_t i)
{
	return 0x0a000000u | ((uint32_t)(i * 7919u) & 1023u);
}

/* libbpf's INFO lines ("skipping unrecognized data section") are noise here; warnings still show. */
static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

/* Sets st_config.emit_events in .rodata before load. The offset comes from the object's BTF, as
 * the TypeScript loader's setConst() finds it, rather than assuming st_config sits at 0. */
static void enable_events(struct bpf_object *obj)
{
	struct bpf_map *rodata = bpf_object__find_map_by_name(obj, ".rodata");
	const struct btf *btf = bpf_object__btf(obj);
	const struct btf_var_secinfo *vsi;
	const struct btf_type *sec;
	struct st_config *cfg = NULL;
	const void *init;
	size_t size = 0;
	char *data;
	int id, i, err;

	if (!rodata || !btf)
		die("set st_config", "the object has no .rodata map or no BTF");
	/* libbpf 1.1 hands out the image read-only: edit a copy and give it back */
	init = bpf_map__initial_value(rodata, &size);
	id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (!init || id < 0)
		die("set st_config", "no .rodata image or no .rodata section in the BTF");
	data = malloc(size);
	if (!data)
		die("set st_config", "out of memory");
	memcpy(data, init, size);
	sec = btf__type_by_id(btf, id);
	vsi = btf_var_secinfos(sec);
	for (i = 0; i < btf_vlen(sec); i++, vsi++) {
		const struct btf_type *var = btf__type_by_id(btf, vsi->type);

		if (strcmp(btf__name_by_offset(btf, var->name_off), "st_config"))
			continue;
		if (vsi->size != sizeof(*cfg) || vsi->offset + sizeof(*cfg) > size)
			die("set st_config", "BTF says %u bytes at offset %u, expected %zu within %zu", vsi->size,
			    vsi->offset, sizeof(*cfg), size);
		cfg = (struct st_config *)(data + vsi->offset);
	}
	if (!cfg)
		die("set st_config", "no variable st_config in .rodata");
	cfg->default_action = XDP_PASS;
	cfg->emit_events = 1;
	err = bpf_map__set_initial_value(rodata, data, size);
	free(data);
	if (err)
		die("set st_config", "%s", strerror(-err));
}

/* Pairs start .. start + n - 1; returns nanoseconds and adds every looked-up cookie to *sum. */
static uint64_t map_pass(int fd, uint64_t start, uint64_t n, uint64_t *sum)
{
	struct st_rule rule = { .action = XDP_PASS }, got;
	struct st_key key;
	uint64_t t0 = now_ns(), i;
	int err;

	for (i = start; i < start + n; i++) {
		key.word = htonl(bench_key(i)); /* __be32: network byte order, as the TS codec writes it */
		rule.cookie = i;
		err = bpf_map_update_elem(fd, &key, &rule, BPF_ANY);
		if (err)
			die("update st_rules", "%s", strerror(-err));
		err = bpf_map_lookup_elem(fd, &key, &got);
		if (err)
			die("lookup in st_rules", "%s", strerror(-err));
		*sum += got.cookie;
	}
	return now_ns() - t0;
}

struct drain {
	uint64_t events;
	uint64_t seq_sum;
	uint64_t mix; /* the other fields, folded in so every field of the record is read */
};

static int on_event(void *ctx, void *data, size_t size)
{
	const struct st_event *e = data;
	struct drain *d = ctx;

	if (size < sizeof(*e))
		return -EINVAL;
	d->events++;
	d->seq_sum += e->seq;
	d->mix ^= e->cookie ^ e->len ^ ((uint64_t)e->cpu << 32);
	return 0;
}

static uint64_t lost_events(int counters_fd)
{
	int ncpus = libbpf_num_possible_cpus(), i;
	struct st_counters *per_cpu;
	uint32_t zero = 0;
	uint64_t lost = 0;
	int err;

	if (ncpus < 0)
		die("count cpus", "%s", strerror(-ncpus));
	per_cpu = calloc(ncpus, sizeof(*per_cpu)); /* 32 bytes: already the 8-byte per-CPU stride */
	if (!per_cpu)
		die("count lost events", "out of memory");
	err = bpf_map_lookup_elem(counters_fd, &zero, per_cpu);
	if (err)
		die("lookup in st_counters", "%s", strerror(-err));
	for (i = 0; i < ncpus; i++)
		lost += per_cpu[i].lost;
	free(per_cpu);
	return lost;
}

/* One fill (untimed) and drain (timed); the drain must take exactly the r events just produced. */
static uint64_t ring_round(int prog_fd, struct ring_buffer *rb, struct drain *d, int r)
{
	char pkt[64] = {}, out[64 + 256];
	LIBBPF_OPTS(bpf_test_run_opts, topts, .data_in = pkt, .data_size_in = sizeof(pkt), .data_out = out,
		    .data_size_out = sizeof(out), .repeat = r);
	uint64_t before = d->events, t0;
	int err, n;

	err = bpf_prog_test_run_opts(prog_fd, &topts);
	if (err)
		die("test run of st_xdp", "%s", strerror(-err));
	t0 = now_ns();
	n = ring_buffer__consume(rb);
	t0 = now_ns() - t0;
	if (n < 0)
		die("consume st_events", "%s", strerror(-n));
	if (d->events - before != (uint64_t)r)
		die("consume st_events", "drained %" PRIu64 " events, the program produced %d",
		    d->events - before, r);
	return t0;
}

int main(int argc, char **argv)
{
	uint64_t start, n, ns, sum;
	int r, err, rules_fd, prog_fd, counters_fd;
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct ring_buffer *rb;
	struct drain d;
	char line[128];

	if (argc != 3)
		die("usage", "runtime-c OBJECT R, then commands on stdin: map START N | ring");
	r = atoi(argv[2]);
	/* 32 bytes a record (8-byte header + 24), so the ring must hold all r of one fill */
	if (r <= 0 || (uint64_t)r * 32 > ST_EVENTS_MAX_ENTRIES)
		die("usage", "R must be positive and R * 32 at most %d", ST_EVENTS_MAX_ENTRIES);
	libbpf_set_print(print_fn);

	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		die("open object", "%s: %s", argv[1], strerror(errno));
	enable_events(obj);
	err = bpf_object__load(obj);
	if (err)
		die("load object", "%s: %s", argv[1], strerror(-err));
	prog = bpf_object__find_program_by_name(obj, "st_xdp");
	if (!prog)
		die("load object", "no program st_xdp");
	prog_fd = bpf_program__fd(prog);
	rules_fd = bpf_object__find_map_fd_by_name(obj, "st_rules");
	counters_fd = bpf_object__find_map_fd_by_name(obj, "st_counters");
	if (rules_fd < 0 || counters_fd < 0)
		die("load object", "no map st_rules or st_counters");
	rb = ring_buffer__new(bpf_object__find_map_fd_by_name(obj, "st_events"), on_event, &d, NULL);
	if (!rb)
		die("open ring buffer st_events", "%s", strerror(errno));

	while (fgets(line, sizeof(line), stdin)) {
		if (sscanf(line, "map %" SCNu64 " %" SCNu64, &start, &n) == 2) {
			sum = 0;
			ns = map_pass(rules_fd, start, n, &sum);
			printf("{\"ops\":%" PRIu64 ",\"ns\":%" PRIu64 ",\"cookieSum\":\"%" PRIu64 "\"}\n", 2 * n, ns, sum);
		} else if (!strcmp(line, "ring\n")) {
			memset(&d, 0, sizeof(d));
			ns = ring_round(prog_fd, rb, &d, r);
			printf("{\"events\":%" PRIu64 ",\"ns\":%" PRIu64 ",\"seqSum\":\"%" PRIu64 "\",\"lost\":%" PRIu64 "}\n",
			       d.events, ns, d.seq_sum, lost_events(counters_fd));
		} else {
			line[strcspn(line, "\n")] = 0;
			die("read command", "unknown command: %s", line);
		}
		fflush(stdout); /* run.mjs waits for each answer before it sends the next command */
	}
	ring_buffer__free(rb);
	bpf_object__close(obj);
	return 0;
}
