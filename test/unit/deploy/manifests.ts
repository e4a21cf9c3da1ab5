// Reading the shipped files under deploy/ for the tests beside this file.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

export interface ContainerPort {
  name?: string;
  containerPort?: number;
  protocol?: string;
}
export interface Container {
  name?: string;
  image?: string;
  command?: string[];
  args?: string[];
  ports?: ContainerPort[];
}
interface PodSpec {
  containers?: Container[];
  initContainers?: Container[];
}
interface Metadata {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
}
export interface Doc {
  kind?: string;
  metadata?: Metadata;
  data?: Record<string, string>;
  spec?: { template?: { metadata?: Metadata; spec?: PodSpec } } & PodSpec;
  images?: { name?: string; newName?: string; newTag?: string; digest?: string }[];
}

/** YAML files under `dir` (relative to the repository root), as relative paths. */
export function yamlFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

export function docs(file: string): Doc[] {
  return parseAllDocuments(readFileSync(join(ROOT, file), 'utf8')).map((d) => d.toJS() as Doc);
}

/** The controller's Deployment (deploy/controller/deployment.yaml) and its one container, `controller`. */
export function controllerDeployment(): { deployment: Doc; container: Container } {
  const deployment = docs('deploy/controller/deployment.yaml').find((d) => d.kind === 'Deployment' && d.metadata?.name === 'spoke-controller');
  const container = deployment?.spec?.template?.spec?.containers?.find((c) => c.name === 'controller');
  assert.ok(deployment !== undefined && container !== undefined, 'no Deployment spoke-controller with a container controller in deploy/controller/deployment.yaml');
  return { deployment, container };
}

/** Every shim node config shipped in deploy/: config.yaml files and ConfigMaps' config.yaml. */
export function shimConfigs(): { where: string; text: string }[] {
  const configs: { where: string; text: string }[] = [];
  for (const file of yamlFiles('deploy')) {
    if (/(^|\/)config\.ya?ml$/.test(file)) configs.push({ where: file, text: readFileSync(join(ROOT, file), 'utf8') });
    for (const d of docs(file)) if (d.kind === 'ConfigMap' && d.data?.['config.yaml'] !== undefined) configs.push({ where: `${file} ConfigMap ${d.metadata?.name}`, text: d.data['config.yaml'] });
  }
  return configs;
}
