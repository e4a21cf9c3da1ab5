// Skips for a missing tool. test/setup.sh installs every tool the tests use, so on CI (CI=true)
// a missing one means setup broke: the test file fails, naming the tool, instead of turning green
// by skipping. Only kernel features (AppArmor, SCMP_ACT_LOG audit records) may skip on CI; those
// tests pass their reason to `skip` directly.

/** The `skip` option for a test that needs a tool: false when present; the reason locally; throws on CI. */
export function requireTool(missing: string | undefined, env: NodeJS.ProcessEnv = process.env): string | false {
  if (missing === undefined) return false;
  if (env.CI === 'true') throw new Error(`${missing}: test/setup.sh installs it, and on CI a missing tool fails the run instead of skipping`);
  return missing;
}
