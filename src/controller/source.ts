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

export class StaticBindingSource implements BindingSource {
  private readonly byNamespace = new Map<string, ProfileBinding[]>();

  constructor(bindings: readonly ProfileBinding[], defaultNamespace = 'default') {
    for (const b of bindings) {
      const ns = b.metadata?.namespace ?? defaultNamespace;
      const list = this.byNamespace.get(ns) ?? [];
      list.push(b);
      this.byNamespace.set(ns, list);
    }
  }

  list(namespace: string): readonly ProfileBinding[] {
    return this.byNamespace.get(namespace) ?? [];
  }

  synced(): boolean {
    return true;
  }
}

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

export class StaticRecordingSource implements RecordingSource {
  private readonly byNamespace = new Map<string, ProfileRecording[]>();

  constructor(recordings: readonly ProfileRecording[], defaultNamespace = 'default') {
    for (const r of recordings) {
      const ns = r.metadata?.namespace ?? defaultNamespace;
      this.byNamespace.set(ns, [...(this.byNamespace.get(ns) ?? []), r]);
    }
  }

  list(namespace: string): readonly ProfileRecording[] {
    return this.byNamespace.get(namespace) ?? [];
  }

  synced(): boolean {
    return true;
  }
}

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
