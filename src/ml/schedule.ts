// Learning-rate schedules as pure functions of training progress measured in (fractional) epochs.

export type ScheduleSettings =
  | { name: 'constant' }
  | { name: 'multistep'; milestones: number[]; gamma: number }
  | { name: 'cosine'; warmup_epochs: number; min_lr: number };

/**
 * lr at progress `epoch` (0 ≤ epoch < total, fractional within an epoch).
 * multistep follows torch's MultiStepLR stepped once per epoch: after `m` completed epochs the
 * rate is multiplied by gamma for every milestone ≤ m. cosine warms up linearly per step, then
 * decays to min_lr along half a cosine over the remaining epochs.
 */
export function learningRate(s: ScheduleSettings, baseLr: number, epoch: number, totalEpochs: number): number {
  switch (s.name) {
    case 'constant':
      return baseLr;
    case 'multistep': {
      const done = Math.floor(epoch);
      return baseLr * s.gamma ** s.milestones.filter((m) => m <= done).length;
    }
    case 'cosine': {
      const warm = Math.min(s.warmup_epochs, totalEpochs);
      if (epoch < warm) return (baseLr * (epoch + 1e-3)) / warm;
      const span = Math.max(totalEpochs - warm, 1e-9);
      const t = Math.min(1, (epoch - warm) / span);
      return s.min_lr + 0.5 * (baseLr - s.min_lr) * (1 + Math.cos(Math.PI * t));
    }
  }
}
