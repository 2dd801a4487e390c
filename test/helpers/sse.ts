// SPDX-License-Identifier: Apache-2.0
// A Server-Sent Events reader for the agent's event stream tests, and a poll-until helper.

export interface Message {
  event: string;
  data: string;
}

/** Reads an SSE stream from fetch() into messages as they arrive. */
export class SseReader {
  readonly messages: Message[] = [];
  private buf = '';
  readonly done: Promise<void>;
  constructor(readonly res: Response) {
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    this.done = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          this.feed(dec.decode(value, { stream: true }));
        }
      } catch {
        /* aborted by the test */
      }
    })();
  }
  /** `message` events so far */
  received = 0;
  feed(text: string): void {
    this.buf += text;
    const blocks = this.buf.split('\n\n');
    this.buf = blocks.pop()!;
    for (const block of blocks) {
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (!data.length) continue;
      this.messages.push({ event, data: data.join('\n') });
      if (event === 'message') this.received++;
    }
  }
  events(): Array<Record<string, unknown>> {
    return this.messages.filter((m) => m.event === 'message').map((m) => JSON.parse(m.data) as Record<string, unknown>);
  }
}

export async function until<T>(what: string, fn: () => T | undefined | false, ms = 10_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

