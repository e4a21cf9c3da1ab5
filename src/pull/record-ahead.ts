// The provenance record of a fetch, written ahead while the blob is on its way. Once the manifest
// is checked, everything an unsigned pull's record holds is known, and the wait for the blob's
// bytes is otherwise idle: the record is staged then (unflushed, under a temp name, as ingest
// would) instead of after the blob's checks, on the pull's path (docs/benchmarks.md). Nothing
// names it until ingest links it; a pull that fails removes it.

import type { ProfileStore, RecordInput, StagedRecord } from '../store/store.js';

export class RecordAhead {
  private staging: Promise<StagedRecord | undefined> | undefined;
  /** Taken or discarded: a stage asked for later writes nothing. */
  private settled = false;

  constructor(
    private readonly store: ProfileStore,
    private readonly input: RecordInput,
    private readonly size: number,
  ) {}

  /**
   * FetchOptions.onDispatched of the blob's request: stages the record in the next check phase,
   * after undici has written the request, so the record never delays it.
   */
  readonly afterDispatch = (): void => {
    setImmediate(this.stage);
  };

  private readonly stage = (): void => {
    if (this.settled || this.staging !== undefined) return;
    // A record that cannot be staged now is written by the ingest, which reports what fails then.
    this.staging = this.store.stageRecord(this.input, this.size).catch(() => undefined);
  };

  /** The record staged ahead, if it was; the ingest now owns it. */
  async take(): Promise<StagedRecord | undefined> {
    this.settled = true;
    const staged = await this.staging;
    this.staging = undefined;
    return staged;
  }

  /** Removes the record staged ahead unless taken. */
  async discard(): Promise<void> {
    await (await this.take())?.discard();
  }
}
