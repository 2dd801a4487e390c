// SPDX-License-Identifier: Apache-2.0
// Closing a connection whose client may still be sending, in stages (RFC 9112 section 9.6).
//
// The API answers some requests before it has read them whole: a 413 for a body declared or grown
// past the limit, a 400 or 431 for broken HTTP. Node then closes the socket at once, with the rest of
// the body unread, and the kernel answers the client's next bytes with a reset. A client still
// writing then fails with EPIPE or ECONNRESET, and most never read the answer that is waiting for
// them (on loopback: Node's fetch lost about one 413 in four, Python's http.client one in eight).
// So: the answer, then a FIN (half-close), then whatever the client still sends is read and dropped
// until it closes its side or LINGER_MS pass. The HTTP parser is detached first: nothing sent after
// the answer is read as another request.
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/** How long a closed connection keeps reading (and dropping) what its client still sends. */
export const LINGER_MS = 5000;

export interface Linger {
  /** answer written: half-close now, read and drop the rest, close when the client does */
  close(socket: Socket): void;
  /** closes every lingering socket now (the server is stopping) */
  stop(): void;
}

export function lingerOn(server: Server): Linger {
  const open = new Set<Socket>();
  let stopping = false;
  const close = (socket: Socket): void => {
    if (socket.destroyed || open.has(socket)) return;
    if (stopping) {
      socket.destroy();
      return;
    }
    open.add(socket);
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => {
      clearTimeout(timer);
      open.delete(socket);
    });
    // node's HTTP parser reads the socket itself: a 'data' listener of our own detaches it (node's
    // listener wrapper unconsumes the parser), after node's own listener is gone
    socket.removeAllListeners('data');
    socket.on('data', () => {});
    socket.on('end', () => socket.destroy());
    socket.end();
    // node stops reading the socket while an unread body fills the request's buffer, and the
    // stream's own state does not know it: start reading again underneath
    socket.resume();
    (socket as Socket & { _read(n: number): void })._read(0);
  };
  // Node closes a connection after its last answer (Connection: close) with socket.destroySoon():
  // end, then destroy once written. That destroy is the early close; this makes it a lingering one.
  server.on('connection', (socket: Socket & { destroySoon?: () => void }) => {
    socket.destroySoon = () => close(socket);
  });
  return {
    close,
    stop() {
      stopping = true;
      for (const s of open) s.destroy();
    },
  };
}
