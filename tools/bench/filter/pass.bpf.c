// SPDX-License-Identifier: GPL-2.0
/* XDP_PASS and nothing else: what BPF_PROG_TEST_RUN itself costs per packet on this machine, so
 * the filter benchmark can show how much of the floor and of ebpfnet is the harness. */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int pass_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}
