// The controller's Kubernetes side, on @kubernetes/client-node (loaded only by `spoke
// controller`, never by the CLI's other commands):
//  - InformerBindingSource: the ProfileBinding list/watch cache (reflector.ts).
//  - KubeStatusClient: PUT of the status subresource for the StatusUpdater (reads: the cache).

import { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { Reflector, type GenericReflectorOptions } from './reflector.js';
import type { BindingSource } from './source.js';
import type { StatusClient } from './status.js';
import { BINDING_PLURAL, GROUP, VERSION, type ProfileBinding } from './types.js';

export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault(); // in-cluster service account when run as the Deployment
  return kc;
}

export type ReflectorOptions = Omit<GenericReflectorOptions<ProfileBinding>, 'plural'>;

/** ProfileBindings in all namespaces, as the webhook reads them. */
export class InformerBindingSource extends Reflector<ProfileBinding> implements BindingSource {
  constructor(kc: KubeConfig, opts: ReflectorOptions = {}) {
    super(kc, { ...opts, plural: BINDING_PLURAL });
  }
}

export class KubeStatusClient implements StatusClient {
  private readonly api: CustomObjectsApi;

  constructor(
    kc: KubeConfig,
    private readonly cache: InformerBindingSource,
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  async get(namespace: string, name: string): Promise<ProfileBinding> {
    const b = this.cache.get(namespace, name);
    if (!b) throw Object.assign(new Error(`profilebinding ${namespace}/${name} not found`), { code: 404 });
    return JSON.parse(JSON.stringify(b)) as ProfileBinding;
  }

  async replaceStatus(namespace: string, name: string, obj: ProfileBinding): Promise<ProfileBinding> {
    return (await this.api.replaceNamespacedCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      plural: BINDING_PLURAL,
      namespace,
      name,
      body: obj,
      fieldManager: 'spoke-controller',
    })) as ProfileBinding;
  }
}
