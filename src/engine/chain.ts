// The hypercall chain of HV KVM (real mode → virtual mode → exit to the
// VMM), shared by Vcpu (main thread) and WorkerVcpu (worker threads).
import type { Engine } from './engine.js';
import { H_TOO_HARD, LEVEL_REAL, LEVEL_VIRTUAL } from '../generated/layout.js';

const TOO_HARD_R3 = BigInt(H_TOO_HARD);

/**
 * Runs the hypercall in the register block at `vcpu`: real mode; on
 * H_TOO_HARD virtual mode re-runs it from scratch and may allocate; on
 * H_TOO_HARD again it exits: H_TOO_HARD is returned and left in r3 (`regs[3]`).
 * Without real mode (`realMode` false: the '5.19' era, cad32d9d42e8) the
 * chain starts in virtual mode.
 */
export function hcallChain(engine: Engine, vcpu: number, regs: BigUint64Array, realMode = true): number {
  if (realMode) {
    const rc = engine.hcall(vcpu, LEVEL_REAL);
    if (rc !== H_TOO_HARD) return rc;
  }
  const rc2 = engine.hcall(vcpu, LEVEL_VIRTUAL);
  if (rc2 !== H_TOO_HARD) return rc2;
  regs[3] = TOO_HARD_R3;
  return H_TOO_HARD;
}
