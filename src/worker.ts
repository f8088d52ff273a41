// spapr-tce/worker: what a worker thread imports to run a vCPU of a host on
// the main thread (src/kvm/worker.ts); it loads the engines and nothing of the model.
export { WorkerVcpu } from './kvm/worker.js';
export type { WorkerVcpuData } from './kvm/worker.js';
