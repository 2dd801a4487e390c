// SPDX-License-Identifier: Apache-2.0
// The kernel-oracle fuzzer's raw-socket half (tools/fuzz/oracle.mjs): Node has no raw sockets.
// Three modes, each run inside a network namespace with nsenter; every line it prints is one event,
// the bytes in hex, and the JavaScript side judges them:
//
//   oracle recv TCPPORTS UDPPORTS PROTOS4 PROTOS6   (target) listeners, UDP sockets, raw sockets
//       R4 <proto> <hex>            an IPv4 packet the stack delivered to protocol <proto> (with its IP header)
//       R6 <proto> <src> <hex>      an IPv6 packet's payload the stack delivered to <proto>, from <src>
//       U <port> <hex>              a datagram read from the UDP socket on <port>
//       A <port>                    a connection accept()ed on <port>
//   oracle cap IFACE                (source) every frame that arrives on IFACE (the target's answers)
//       C <hex>
//   oracle send IFACE BURST GAPUS   (source) frames from stdin (u16 big-endian length, bytes) onto IFACE
//       sent <n> <errors>
//
// recv and cap print "ready" once their sockets are open and run until stdin closes or SIGTERM;
// a line written to their stdin is answered with "mark" once everything before it is printed.
// Lists are comma-separated numbers.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXFD 128
#define RECV_HEX 160   // a delivery: enough for the headers that carry a frame's tag
#define CAP_HEX 1600   // an answer: an ICMP error quotes up to 1,232 bytes of the packet it answers

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static void die(const char *what) {
  fprintf(stderr, "oracle: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void hex(const unsigned char *b, ssize_t n, ssize_t max) {
  static const char d[] = "0123456789abcdef";
  if (n > max) n = max;
  for (ssize_t i = 0; i < n; i++) {
    putchar(d[b[i] >> 4]);
    putchar(d[b[i] & 15]);
  }
}

static int parse_list(const char *s, int *out, int max) {
  int n = 0;
  char *copy = strdup(s), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) out[n++] = atoi(t);
  free(copy);
  return n;
}

static void bigbuf(int fd) {
  int sz = 64 << 20;  // the bursts arrive faster than this process prints them
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
}

enum kind { RAW4, RAW6, UDP, LISTEN, CAP };
struct src { int fd; enum kind kind; int arg; };

/** prints what source i holds, without waiting */
static void drain(struct src *s) {
  static unsigned char buf[65536];
  for (;;) {
    if (s->kind == LISTEN) {
      int c = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK);
      if (c < 0) return;
      printf("A %d\n", s->arg);
      close(c);
      continue;
    }
    struct sockaddr_in6 from;
    socklen_t fl = sizeof from;
    ssize_t k = recvfrom(s->fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
    if (k < 0) return;
    switch (s->kind) {
      case RAW4: printf("R4 %d ", s->arg); hex(buf, k, RECV_HEX); break;
      case RAW6: {
        char a[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &from.sin6_addr, a, sizeof a);
        printf("R6 %d %s ", s->arg, a);
        hex(buf, k, RECV_HEX);
        break;
      }
      case UDP: printf("U %d ", s->arg); hex(buf, k, RECV_HEX); break;
      case CAP:
        if (((struct sockaddr_ll *)&from)->sll_pkttype == PACKET_OUTGOING) continue;
        printf("C ");
        hex(buf, k, CAP_HEX);
        break;
      default: break;
    }
    putchar('\n');
  }
}

/**
 * Prints what the sockets get until stdin closes. A line on stdin is a mark: everything the
 * sockets hold is printed first, then "mark", so the reader knows where a round's events end.
 */
static int run_loop(struct src *s, int n) {
  struct pollfd p[MAXFD + 1];
  char in[4096];
  for (int i = 0; i < n; i++) p[i] = (struct pollfd){ .fd = s[i].fd, .events = POLLIN };
  p[n] = (struct pollfd){ .fd = 0, .events = POLLIN };
  printf("ready\n");
  fflush(stdout);
  while (!stop) {
    int r = poll(p, n + 1, 200);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    for (int i = 0; i < n; i++) if (p[i].revents & POLLIN) drain(&s[i]);
    if (p[n].revents) {
      ssize_t k = read(0, in, sizeof in);
      if (k <= 0) break;
      for (int i = 0; i < n; i++) drain(&s[i]);
      for (ssize_t j = 0; j < k; j++) if (in[j] == '\n') printf("mark\n");
    }
    fflush(stdout);
  }
  fflush(stdout);
  return 0;
}

static int mode_recv(char **argv) {
  int tcp[16], udp[16], p4[32], p6[32];
  int nt = parse_list(argv[0], tcp, 16), nu = parse_list(argv[1], udp, 16);
  int n4 = parse_list(argv[2], p4, 32), n6 = parse_list(argv[3], p6, 32);
  struct src s[MAXFD];
  int n = 0, one = 1, zero = 0;
  for (int i = 0; i < nt + nu; i++) {
    int tcpish = i < nt, port = tcpish ? tcp[i] : udp[i - nt];
    // one dual-stack socket per port: IPv4 arrives as v4-mapped
    int fd = socket(AF_INET6, (tcpish ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any };
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (tcpish && listen(fd, 4096) < 0) die("listen");
    if (!tcpish) bigbuf(fd);
    s[n++] = (struct src){ fd, tcpish ? LISTEN : UDP, port };
  }
  for (int i = 0; i < n4 + n6; i++) {
    int v4 = i < n4, proto = v4 ? p4[i] : p6[i - n4];
    int fd = socket(v4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_NONBLOCK, proto);
    if (fd < 0) die("raw socket");
    bigbuf(fd);
    s[n++] = (struct src){ fd, v4 ? RAW4 : RAW6, proto };
  }
  return run_loop(s, n);
}

static int mode_cap(char **argv) {
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
  if (fd < 0) die("packet socket");
  bigbuf(fd);
  struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)if_nametoindex(argv[0]) };
  if (!a.sll_ifindex) die(argv[0]);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind packet socket");
  struct src s = { fd, CAP, 0 };
  return run_loop(&s, 1);
}

static int mode_send(char **argv) {
  int fd = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: this socket receives nothing
  if (fd < 0) die("packet socket");
  struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(argv[0]), .sll_halen = 6 };
  if (!a.sll_ifindex) die(argv[0]);
  int burst = atoi(argv[1]), gap = atoi(argv[2]);
  static unsigned char buf[65536];
  long sent = 0, errors = 0;
  for (;;) {
    unsigned char h[2];
    if (fread(h, 1, 2, stdin) != 2) break;
    size_t len = (size_t)h[0] << 8 | h[1];
    if (fread(buf, 1, len, stdin) != len) break;
    if (sendto(fd, buf, len, 0, (struct sockaddr *)&a, sizeof a) < 0) {
      fprintf(stderr, "oracle: send frame %ld (%zu bytes): %s\n", sent + errors, len, strerror(errno));
      errors++;
    } else {
      sent++;
    }
    // pace the bursts: the receiving veth queues what its NAPI has not run yet, and drops the rest
    if (burst > 0 && (sent + errors) % burst == 0 && gap > 0) {
      struct timespec t = { 0, gap * 1000L };
      nanosleep(&t, NULL);
    }
  }
  printf("sent %ld %ld\n", sent, errors);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  signal(SIGPIPE, SIG_IGN);
  if (argc == 6 && !strcmp(argv[1], "recv")) return mode_recv(argv + 2);
  if (argc == 3 && !strcmp(argv[1], "cap")) return mode_cap(argv + 2);
  if (argc == 5 && !strcmp(argv[1], "send")) return mode_send(argv + 2);
  fprintf(stderr, "oracle: usage: oracle recv TCPPORTS UDPPORTS PROTOS4 PROTOS6 | cap IFACE | send IFACE BURST GAPUS\n");
  return 2;
}
