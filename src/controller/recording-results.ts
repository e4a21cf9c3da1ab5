// Which results count for a recording (docs/recording.md): only those from the node that runs
// the pod they name (resultNodeProblem). The verdict is taken while the pod is in the pod cache
// and remembered (by result uid), so a pod deleted after its result arrived still counts;
// results judged never are ignored, and every ignored result is named (the caller's
// ResultsAccepted condition) and logged once.

import { resultBelongs, resultNodeProblem, type ProfileRecordingResult } from './recording.js';
import type { Pod } from './types.js';

/** Verdicts (and results reported as ignored) remembered, by result uid. */
const MAX_REMEMBERED = 16 * 1024;

export interface ResultGateOptions {
  results(namespace: string): readonly ProfileRecordingResult[];
  /** A pod marked for recording (the controller's label-selected pod cache). */
  pod(namespace: string, name: string): Pod | undefined;
  /** The cluster's recording key; none → no result counts. */
  recordingKey?: Buffer;
  log?: (event: Record<string, unknown>) => void;
}

export class ResultGate {
  /** Verdicts of resultNodeProblem by result uid, taken while the pod was in the cache ('' = accepted). */
  private readonly verdicts = new Map<string, string>();
  private readonly reported = new Set<string>();

  constructor(private readonly o: ResultGateOptions) {}

  /** The recording's results, split by resultNodeProblem (file header). */
  accepted(namespace: string, name: string, uid: string | undefined): { results: ProfileRecordingResult[]; ignored: string[] } {
    const results: ProfileRecordingResult[] = [];
    const ignored: string[] = [];
    for (const r of this.o.results(namespace)) {
      if (!resultBelongs(r, { namespace, name, uid })) continue;
      const id = r.metadata.uid ?? `${namespace}/${r.metadata.name}`;
      let verdict = this.verdicts.get(id);
      if (verdict === undefined) {
        const pod = this.o.pod(namespace, typeof r.spec?.pod === 'string' ? r.spec.pod : '');
        verdict = resultNodeProblem(r, { namespace, name }, pod, this.o.recordingKey) ?? '';
        // Remembered once the pod is cached and scheduled: a cache that lags the scheduler is asked again.
        if (pod?.spec?.nodeName) {
          if (this.verdicts.size >= MAX_REMEMBERED) this.verdicts.delete(this.verdicts.keys().next().value as string);
          this.verdicts.set(id, verdict);
        }
      }
      if (verdict === '') results.push(r);
      else {
        ignored.push(`${r.metadata.name}: ${verdict}`);
        if (!this.reported.has(id)) {
          if (this.reported.size >= MAX_REMEMBERED) this.reported.delete(this.reported.values().next().value as string);
          this.reported.add(id);
          this.o.log?.({ msg: 'recording result ignored', recording: `${namespace}/${name}`, result: r.metadata.name, reason: verdict });
        }
      }
    }
    return { results, ignored: ignored.sort() };
  }
}
