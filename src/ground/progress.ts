// Structured live progress of a running stage: what a kind reports, what jobs relay from their
// processes and workers, and what the reporters format for a terminal or as plain log lines.

export interface ProgressUpdate {
  /** Free text shown when nothing else fits, e.g. "extracting data_batch_3.bin". */
  message?: string;
  epoch?: number;
  epochs?: number;
  batch?: number;
  batches?: number;
  loss?: number;
  accuracy?: number;
  imagesPerSecond?: number;
  /** Seconds left for this stage, if the stage can tell. */
  etaSeconds?: number;
  /** 0..1 for byte/item counts (downloads, extraction). */
  fraction?: number;
}
