// One of two processes that share a folder: N times, put a file of its own in ROOT/ebpfnet/filter
// (through withDir, or with a plain mkdir -p when PLAIN is given) and remove it, pruning the folders
// it leaves empty, as ebpfnet's pin and unload do. Prints {"enoent":K}: creates that found the
// folder gone. Runs against dist/ (node cannot import the TypeScript sources).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [, , dist, root, me, n, plain] = process.argv;
const { pruneEmptyDirs, withDir } = await import(join(dist, 'loader', 'dirs.js'));
const leaf = join(root, 'ebpfnet', 'filter');
const file = join(leaf, me);
let enoent = 0;
for (let i = 0; i < Number(n); i++) {
  try {
    if (plain) {
      mkdirSync(leaf, { recursive: true });
      writeFileSync(file, 'x');
    } else withDir(leaf, () => writeFileSync(file, 'x'));
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
    enoent++;
    continue;
  }
  rmSync(file);
  pruneEmptyDirs(leaf, join(root, 'ebpfnet'));
}
process.stdout.write(`${JSON.stringify({ enoent })}\n`);
