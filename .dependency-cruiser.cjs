// Import direction of docs/architecture.md: each folder may import only the folders listed; nothing imports cli/; no cycles.
const allowed = {
  core: [],
  policy: ['core'],
  registry: ['core'],
  verify: ['core', 'registry'],
  profiles: ['core'],
  store: ['core'],
  publish: ['core', 'registry', 'profiles', 'verify'],
  cri: ['core', 'profiles', 'store', 'pull', 'policy', 'observe', 'config', 'apparmor', 'registry'],
  apparmor: ['core', 'profiles'],
  controller: ['core', 'policy', 'profiles', 'publish'],
  recorder: ['core', 'profiles'],
  config: ['core', 'policy', 'profiles'],
  observe: ['core'],
  pull: ['core', 'policy', 'registry', 'verify', 'profiles', 'store'],
};
const folders = Object.keys(allowed).filter((f) => f !== 'pull');
// `pull` is src/pull.ts (the pipeline) and its steps' helpers in src/pull/.
const pathOf = (f) => (f === 'pull' ? '^src/pull(\\.ts$|/)' : `^src/${f}/`);
const forbidden = [
  { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
  { name: 'nothing-imports-cli', severity: 'error', from: { pathNot: '^src/cli/' }, to: { path: '^src/cli/' } },
];
for (const [from, may] of Object.entries(allowed)) {
  const others = [...folders, 'pull'].filter((f) => f !== from && !may.includes(f));
  if (others.length === 0) continue;
  forbidden.push({
    name: `${from}-imports-only-${may.join('-') || 'nothing'}`,
    severity: 'error',
    from: { path: pathOf(from) },
    to: { path: others.map(pathOf).join('|') },
  });
}
module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    exclude: { path: '^(dist|test)/' },
  },
};
