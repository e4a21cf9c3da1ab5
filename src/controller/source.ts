// Where the webhook gets the bindings of a namespace from. The controller gives it the
// informer-backed cache (informer.ts); tests and `spoke binding apply` give a static list.

import type { ProfileRecording } from './recording.js';
import type { ProfileBinding } from './types.js';

export interface BindingSource {
  /** The bindings of `namespace` as last seen (raw objects; validated by the caller). */
  list(namespace: string): readonly ProfileBinding[];
  /** False until the first complete list: before that the webhook refuses to answer "no bindings". */
  synced(): boolean;
}

/** A fixed list of namespaced objects, by namespace (objects without one: `defaultNamespace`). */
class StaticByNamespace<T extends { metadata?: { namespace?: string } }> {
  private readonly byNamespace = new Map<string, T[]>();

  constructor(items: readonly T[], defaultNamespace = 'default') {
    for (const item of items) {
      const ns = item.metadata?.namespace ?? defaultNamespace;
      this.byNamespace.set(ns, [...(this.byNamespace.get(ns) ?? []), item]);
    }
  }

  list(namespace: string): readonly T[] {
    return this.byNamespace.get(namespace) ?? [];
  }

  synced(): boolean {
    return true;
  }
}

export class StaticBindingSource extends StaticByNamespace<ProfileBinding> implements BindingSource {}

/**
 * Where the webhook gets the ProfileRecordings of a namespace from (to mark pods for
 * recording). The controller gives it the recording controller's list/watch cache; tests give
 * a static list. Without one the webhook never marks pods.
 */
export interface RecordingSource {
  /** The recordings of `namespace` as last seen (raw objects; validated by the caller). */
  list(namespace: string): readonly ProfileRecording[];
  /** False until the first complete list: before that pods are admitted unmarked, with a warning. */
  synced(): boolean;
}

export class StaticRecordingSource extends StaticByNamespace<ProfileRecording> implements RecordingSource {}

/**
 * Where the webhook gets a namespace's labels from (its Pod Security enforce level decides
 * whether the OCI field can be written: binding.ts rule 8). The controller gives it a
 * list/watch cache of namespaces; tests and `spoke binding apply` give a static map.
 */
export interface NamespaceSource {
  /** The namespace's labels as last seen; undefined when the namespace is not (yet) known. */
  labels(namespace: string): Readonly<Record<string, string>> | undefined;
  synced(): boolean;
}

export class StaticNamespaceSource implements NamespaceSource {
  constructor(private readonly byName: Readonly<Record<string, Readonly<Record<string, string>>>>) {}

  labels(namespace: string): Readonly<Record<string, string>> | undefined {
    return Object.prototype.hasOwnProperty.call(this.byName, namespace) ? this.byName[namespace] : undefined;
  }

  synced(): boolean {
    return true;
  }
}
