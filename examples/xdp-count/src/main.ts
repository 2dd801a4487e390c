// SPDX-License-Identifier: Apache-2.0
// Loads build/xdpcount.bpf.o onto an interface, prints a line per packet of one IP protocol as the
// kernel reports it, and on Ctrl-C the packets counted per protocol. ebpfnet detaches the program
// when the process ends, however it ends.
import { fileURLToPath } from 'node:url';
import { EbpfnetError, ObjectSpec, RingBuffer, onShutdown } from 'ebpfnet';
import * as X from './gen/xdpcount.js';

const PROTOS: Record<string, number> = { icmp: 1, tcp: 6, udp: 17 };

const ipv4 = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
const show = (e: X.XcEvent): void => console.log(`${ipv4(e.saddr)} > ${ipv4(e.daddr)} proto ${e.proto} ttl ${e.ttl} len ${e.len}`);

function main(): void {
  const [ifname, protoName = 'icmp'] = process.argv.slice(2);
  const proto = PROTOS[protoName];
  if (!ifname || proto === undefined) {
    console.error(`xdp-count: usage: xdp-count <interface> [${Object.keys(PROTOS).join('|')}]`);
    process.exitCode = 2;
    return;
  }
  const spec = ObjectSpec.open(fileURLToPath(new URL('../build/xdpcount.bpf.o', import.meta.url)));
  // a const volatile knob: the verifier sees it as a constant
  spec.setConst(X.RODATA.name, X.RODATA.codec, { report_proto: proto });
  const obj = spec.load();
  const link = obj.program(X.PROG_XC_XDP).attachXdp(ifname);
  const counts = obj.map(X.XC_COUNTS);
  const events = new RingBuffer(obj.map(X.XC_EVENTS), X.XcEvent);
  events.start(show);
  console.log(`counting on ${ifname} (${link.mode} XDP), reporting ${protoName}; Ctrl-C to stop`);
  // runs on Ctrl-C or SIGTERM, before ebpfnet detaches the program and closes the maps
  onShutdown(() => {
    events.consume(show);
    for (const [p, c] of counts.entries()) if (c.packets) console.log(`proto ${p}: ${c.packets} packets, ${c.bytes} bytes`);
  });
}

try {
  main();
} catch (e) {
  // expected errors (no such interface, not root, a verifier rejection) are one line, no stack
  if (!(e instanceof EbpfnetError)) throw e;
  console.error(`xdp-count: ${e.message}`);
  process.exitCode = 1;
}
