// The status-bar item: "Job 123 · node1 · 1:02:03 left", or "queued: <reason>, expected start HH:MM".
import { Widget } from '@lumino/widgets';

import { CardModel } from './model';
import { formatClock, formatRemaining, warningLevel } from './time';

export class JobStatusItem extends Widget {
  constructor(
    private readonly model: CardModel,
    private readonly onOpen: () => void
  ) {
    super();
    this.id = 'jupyterhub-hpc-status';
    this.addClass('jp-hpc-status');
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this.node.title = 'Batch job: click for the full card';
    this.node.addEventListener('click', () => this.onOpen());
    this.node.addEventListener('keydown', (event: KeyboardEvent) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        this.onOpen();
      }
    });
    model.changed.connect(this.update, this);
    model.tick.connect(this.update, this);
  }

  /** Whether the status bar should show the item at all (not outside a hub). */
  get active(): boolean {
    return this.model.card !== null;
  }

  update(): void {
    const card = this.model.card;
    const job = card?.job ?? null;
    this.removeClass('jp-hpc-status-warn');
    this.removeClass('jp-hpc-status-critical');
    this.node.dataset.jobId = job?.id ?? '';
    this.node.dataset.state = job?.state ?? 'none';
    if (!card) {
      this.node.textContent = this.model.error ? 'job: unknown' : 'job: …';
      return;
    }
    if (!job) {
      this.node.textContent = 'no batch job';
      return;
    }
    if (job.state === 'pending') {
      const reason = job.reason_text ?? job.reason ?? 'waiting';
      const start = job.expected_start ? `, expected start ${formatClock(job.expected_start)}` : '';
      this.node.textContent = `queued: ${reason}${start}`;
      return;
    }
    const where = job.nodes.length ? ` · ${job.nodes.join(',')}` : '';
    const remaining = this.model.remainingSeconds();
    if (job.state !== 'running' || remaining === null) {
      this.node.textContent = `Job ${job.id}${where} · ${job.state}`;
      return;
    }
    this.node.dataset.remaining = String(Math.floor(remaining));
    this.node.textContent = `Job ${job.id}${where} · ${formatRemaining(remaining)} left`;
    const level = warningLevel(remaining, card.walltime.warn_seconds);
    if (level) {
      this.addClass(`jp-hpc-status-${level}`);
    }
  }
}
