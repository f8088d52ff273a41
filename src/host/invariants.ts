// The invariants of docs/semantics.md §3, checked over the whole host with
// the restore's own checkers (src/snapshot/fsck/): first the structures in
// linear memory (every list and tree walked within bounds, every pointer a
// block of its kind), so that this terminates on any memory; then, if they
// hold, the accounting (locked_vm, used, mapped, pins, references). Each
// broken one is reported with what was expected and found.
import type { HostContext } from '../core/context.js';
import { InvariantError } from '../core/errors.js';
import { describeHost, type StateSource } from '../snapshot/state.js';
import { fsck, accountingProblems, SnapshotError } from '../snapshot/fsck/index.js';

/** What the invariants are checked over: a host's context and its live objects (Host is one). */
export type InvariantSubject = StateSource & HostContext;

/** Throws InvariantError listing every broken invariant of `host`. */
export function checkInvariants(host: InvariantSubject): void {
  let graph;
  try {
    graph = fsck(describeHost(host), { mem: host.mem, heapCheck: () => host.engine.heapCheck(), root: 'host', graceInProgress: host.reclaim.pendingCount() > 0 });
  } catch (e) {
    if (e instanceof SnapshotError) throw new InvariantError([`${e.field}: ${e.reason}`]);
    throw e;
  }
  const problems = accountingProblems(graph);
  if (problems.length) throw new InvariantError(problems.map((p) => p.message));
}
