import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One seed per file for every fast-check property, printed with its replay command on failure.
    setupFiles: ['test/fast-check-setup.ts'],
    // The default forks pool: with threads, the addon's static state would be shared across files.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
