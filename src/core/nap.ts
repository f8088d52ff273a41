// The host thread's bounded waits (a grace period, a view lock a vCPU holds)
// sleep in short steps between looks at shared memory. Atomics.wait on a
// word nobody wakes is a sleep that works on Node's main thread as well as
// on workers, without an event-loop turn.
const word = new Int32Array(new SharedArrayBuffer(4));

/** Sleeps the calling thread for about `ms` milliseconds. */
export function nap(ms: number): void {
  Atomics.wait(word, 0, 0, ms);
}
