/* SPDX-License-Identifier: GPL-2.0 */
/* What every ebpfnet program includes: kernel types (CO-RE, from vmlinux.h) and libbpf's helpers. */
#ifndef EBPFNET_COMMON_H
#define EBPFNET_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>


#endif
