// Layout names the reclamation tests read (one import site).
export { VCPU_RCU_SEQ } from '../../src/generated/layout.js';
export { RegView } from '../../src/generated/views.js';
