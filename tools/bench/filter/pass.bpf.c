// SPDX-License-Identifier: GPL-2.0
/* Programs that return at once: what BPF_PROG_TEST_RUN itself costs per packet on this machine, so
 * the filter benchmark can subtract the harness from every row (XDP rows: pass_xdp; tc rows such
 * as the egress hook: pass_tc, whose test run builds an skb and costs more). */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int pass_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int pass_tc(struct __sk_buff *skb)
{
	return 0; /* TC_ACT_OK */
}
