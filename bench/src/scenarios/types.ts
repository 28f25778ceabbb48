import type { Results } from "../report.js";

export interface Ctx {
  quick: boolean;
  /** Repetitions per metric (≥ 3). */
  reps: number;
  /** Repetitions for the slow scenarios (snapshot, host-rss, scale): 3 unless --reps says otherwise. */
  heavyReps: number;
  results: Results;
}

export interface Scenario {
  /** Name used by --only. */
  name: string;
  describe: string;
  /** Needs the raw baseline in the same run for its ratios. */
  needsRaw?: boolean;
  run(ctx: Ctx): Promise<void>;
}
