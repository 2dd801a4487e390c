// SPDX-License-Identifier: Apache-2.0
// What a person types about services: addresses, backends, and every way to get them wrong (each a
// one-line EBPFNET_USAGE error, which the CLI turns into exit 2).
import { describe, expect, it } from 'vitest';
import { EbpfnetError } from '../../src/errors.js';
import { hostPort, ipText, parseIp } from '../../src/lb/addr.js';
import { parseServiceFile } from '../../src/lb/file.js';
import { backendName, makeService, parseBackend, parseServiceAddr, serviceName } from '../../src/lb/model.js';

const usageError = (fn: () => unknown): EbpfnetError => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EbpfnetError);
    expect((e as EbpfnetError).code).toBe('EBPFNET_USAGE');
    expect((e as EbpfnetError).message).not.toContain('\n');
    return e as EbpfnetError;
  }
  throw new Error('expected a usage error');
};

describe('lb addresses', () => {
  it('keeps IPv4 as IPv4-mapped IPv6 bytes and prints it dotted', () => {
    const ip = parseIp('10.96.0.10')!;
    expect(ip.family).toBe(4);
    expect(Buffer.from(ip.bytes).toString('hex')).toBe('00000000000000000000ffff0a60000a');
    expect(ip.text).toBe('10.96.0.10');
  });

  it('treats an IPv4-mapped IPv6 address as the IPv4 address it reaches', () => {
    const ip = parseIp('::ffff:10.96.0.10')!;
    expect(ip.family).toBe(4);
    expect(ip.text).toBe('10.96.0.10');
    expect(parseIp('::FFFF:0a60:000a')!.text).toBe('10.96.0.10');
  });

  it('prints IPv6 in RFC 5952 form', () => {
    expect(parseIp('FD00:0:0:0:0:0:0:1')!.text).toBe('fd00::1');
    expect(parseIp('2001:db8:0:0:1:0:0:1')!.text).toBe('2001:db8::1:0:0:1');
    expect(parseIp('::1')!.text).toBe('::1');
    expect(parseIp('::')!.text).toBe('::');
    expect(parseIp('1:2:3:4:5:6:7:8')!.text).toBe('1:2:3:4:5:6:7:8');
    expect(ipText(parseIp('fd00::1:0:0:0:1')!.bytes)).toBe('fd00:0:0:1::1');
  });

  it('rejects what is not an address, and zone ids', () => {
    for (const s of ['10.96.0.300', 'fd00::g', 'fe80::1%eth0', 'example.com', '', '1.2.3']) expect(parseIp(s)).toBeNull();
  });

  it('formats host:port with brackets for IPv6', () => {
    expect(hostPort(parseIp('fd00::1')!, 53)).toBe('[fd00::1]:53');
    expect(hostPort(parseIp('10.0.0.1')!.bytes, 80)).toBe('10.0.0.1:80');
  });
});

describe('lb services and backends', () => {
  it('parses VIP:PORT/PROTO for both families; tcp is the default protocol', () => {
    expect(serviceName(parseServiceAddr('10.96.0.10:80/tcp'))).toBe('10.96.0.10:80/tcp');
    expect(serviceName(parseServiceAddr('[FD00::0:1]:53/UDP'))).toBe('[fd00::1]:53/udp');
    expect(parseServiceAddr('[::ffff:10.96.0.10]:80/tcp').ip.family).toBe(4);
  });

  it('parses backends with weight and state', () => {
    const b = parseBackend('10.244.2.7:8080,weight=2');
    expect({ name: backendName(b), weight: b.weight, state: b.state }).toEqual({ name: '10.244.2.7:8080', weight: 2, state: 'active' });
    const d = parseBackend('[fd00::7]:8080,state=draining,weight=3');
    expect({ name: backendName(d), weight: d.weight, state: d.state }).toEqual({ name: '[fd00::7]:8080', weight: 3, state: 'draining' });
  });

  it.each([
    ['10.96.0.300:80/tcp', /'10\.96\.0\.300' is not an IP address/],
    ['10.96.0.10:0/tcp', /port 0 is out of range/],
    ['10.96.0.10:65536/tcp', /port 65536 is out of range/],
    ['10.96.0.10:http/tcp', /'http' is not a port/],
    ['10.96.0.10:80/sctp', /unknown protocol 'sctp'/],
    ['10.96.0.10/tcp', /has no port/],
    ['fd00::1:80/tcp', /has no port/],
    ['10.96.0.10:443', /service '10\.96\.0\.10:443' has no protocol; write VIP:PORT\/PROTO/],
    ['[fd00::1]:53', /has no protocol/],
  ])('service %s is bad input', (s, re) => {
    expect(usageError(() => parseServiceAddr(s, 'lb add')).message).toMatch(re);
  });

  it.each([
    ['10.244.1.5', /backend '10\.244\.1\.5' has no port; write IP:PORT, e.g\. 10\.244\.1\.5:8080/],
    ['[fd00::5]', /has no port; write IP:PORT, e.g\. \[fd00::5\]:8080/],
    ['10.244.1.5:8080,weight=0', /weight '0' is not a number from 1 to 65535; to stop new connections to a backend, use state=draining/],
    ['10.244.1.5:8080,weight=70000', /weight '70000'/],
    ['10.244.1.5:8080,state=gone', /unknown state 'gone'/],
    ['10.244.1.5:8080,colour=red', /unknown option 'colour'/],
    ['10.244.1.5:8080,weight=1,weight=2', /weight given twice/],
    ['10.244.1.5:8080,heavy', /'heavy' is not key=value/],
  ])('backend %s is bad input', (s, re) => {
    expect(usageError(() => parseBackend(s, 'lb add')).message).toMatch(re);
  });

  it('checks a whole service: one family, no duplicates, affinity in range', () => {
    expect(usageError(() => makeService('10.96.0.10:80/tcp', ['[fd00::5]:80'])).message).toMatch(/backend \[fd00::5\]:80 is IPv6 but the service is IPv4/);
    expect(usageError(() => makeService('10.96.0.10:80/tcp', ['10.0.0.1:80', '10.0.0.1:80,weight=2'])).message).toMatch(/listed twice/);
    expect(usageError(() => makeService('10.96.0.10:80/tcp', [], '99999999')).message).toMatch(/affinity/);
    expect(makeService('10.96.0.10:80/tcp', [], true).affinity).toBe(10800);
    expect(makeService('10.96.0.10:80/tcp', [], '60').affinity).toBe(60);
    expect(makeService('10.96.0.10:80/tcp', []).affinity).toBe(0);
  });
});

describe('lb apply file', () => {
  it('reads YAML with string and map backends', () => {
    const specs = parseServiceFile(
      `services:
  - service: 10.96.0.10:80/tcp
    affinity: 60
    backends:
      - 10.244.1.5:8080
      - 10.244.2.7:8080,weight=2
      - { address: "10.244.3.9:8080", state: draining }
  - service: "[fd00::10]:53/udp"
`,
      'services.yaml',
    );
    expect(specs.map(serviceName)).toEqual(['10.96.0.10:80/tcp', '[fd00::10]:53/udp']);
    expect(specs[0].affinity).toBe(60);
    expect(specs[0].backends.map((b) => [backendName(b), b.weight, b.state])).toEqual([
      ['10.244.1.5:8080', 1, 'active'],
      ['10.244.2.7:8080', 2, 'active'],
      ['10.244.3.9:8080', 1, 'draining'],
    ]);
    expect(specs[1].backends).toEqual([]);
  });

  it('reads JSON, a bare list, and an empty file (no services at all)', () => {
    expect(parseServiceFile('{"services":[{"service":"10.96.0.10:80/tcp","backends":["10.0.0.1:80"]}]}', 'x.json')).toHaveLength(1);
    expect(parseServiceFile('- service: 10.96.0.10:80/tcp\n', 'x.yaml')).toHaveLength(1);
    expect(parseServiceFile('', 'empty.yaml')).toEqual([]);
    expect(parseServiceFile('services: []\n', 'x.yaml')).toEqual([]);
  });

  it.each([
    ['services:\n  - service: 10.96.0.10:80/tcp\n    backends: [10.0.0.1]\n', /services\[0\]\.backends\[0\]: backend '10\.0\.0\.1' has no port/],
    ['services:\n  - service: 10.96.0.10:0/tcp\n', /services\[0\]: service '10\.96\.0\.10:0\/tcp': port 0 is out of range/],
    ['services:\n  - backends: []\n', /services\[0\]: service is missing/],
    ['services:\n  - service: 10.96.0.10:80/tcp\n    weight: 3\n', /services\[0\]: unknown key 'weight'/],
    ['services:\n  - service: 10.96.0.10:80/tcp\n  - service: 10.96.0.10:80/TCP\n', /services\[1\]: 10\.96\.0\.10:80\/tcp is already defined at services\[0\]/],
    ['servces: []\n', /unknown top-level key 'servces'/],
    ['services: [\n', /line \d+/],
    ['{"services": [\n  {"service": "10.96.0.10:80/tcp",}\n', /line \d+/],
    ['services:\n  - service: 10.96.0.10:80/tcp\n    backends:\n      - { address: "10.0.0.1:80", weight: 0 }\n', /backends\[0\]: backend 10\.0\.0\.1:80: weight '0'/],
  ])('a bad file is one usage error naming where: %#', (text, re) => {
    const e = usageError(() => parseServiceFile(text, 'services.yaml'));
    expect(e.message).toMatch(/^lb apply services\.yaml: /);
    expect(e.message).toMatch(re);
  });
});
