// The batch kernel of the notebook in front, in the status bar (issue 16): "Kernel job 456 · gpu1 ·
// 58:02 left", the same countdown and warning colours as the server's own job (status.ts), from
// the kernel job's scheduler end time (GET <base_url>jupyterhub-hpc/kernels, which reads the
// server's cache and never queries the scheduler). Asked again when the notebook in front or its
// kernel changes, and every REFRESH_MS while a batch kernel is shown (a changed time limit).
import { ISessionContext } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { KernelSpec } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { IKernelJob, fetchKernelJobs, isBatchKernel } from './kerneljobs';
import { CardModel } from './model';
import { formatRemaining, warningLevel } from './time';

const REFRESH_MS = 60000;
/** past its end time, the route is asked again this often (the job is ending) */
const ENDING_MS = 5000;
/** the statuses of a kernel that runs */
const LIVE = new Set(['idle', 'busy']);
/** the hub's default warnings (jobcard.py) when there is no card (a Lab outside a hub) */
const DEFAULT_WARN_SECONDS = [900, 300];

export class KernelJobStatusItem extends Widget {
  private job: IKernelJob | null = null;
  private context: ISessionContext | null = null;
  private refreshTimer: number | undefined;
  private tickTimer: number | undefined;
  private asked = 0;
  private askedAt = 0;
  private readonly activeSignal = new Signal<this, void>(this);

  constructor(
    private readonly notebooks: INotebookTracker,
    private readonly specs: KernelSpec.IManager,
    private readonly model: CardModel
  ) {
    super();
    this.id = 'jupyterhub-hpc-kernel-status';
    this.addClass('jp-hpc-status');
    this.addClass('jp-hpc-kernel-status');
    this.node.title = "The notebook's kernel runs as a batch job";
    notebooks.currentChanged.connect(() => this.follow(), this);
    this.follow();
  }

  /** Whether the status bar shows the item: the notebook in front has a batch kernel job. */
  get active(): boolean {
    return this.job !== null;
  }

  get activeStateChanged(): ISignal<this, void> {
    return this.activeSignal;
  }

  private follow(): void {
    this.context?.statusChanged.disconnect(this.kernelMoved, this);
    this.context?.kernelChanged.disconnect(this.kernelMoved, this);
    this.context = this.notebooks.currentWidget?.sessionContext ?? null;
    this.context?.statusChanged.connect(this.kernelMoved, this);
    this.context?.kernelChanged.connect(this.kernelMoved, this);
    this.kernelMoved();
  }

  private kernelMoved(): void {
    const kernel = this.context?.session?.kernel;
    const status = this.context?.kernelDisplayStatus;
    if (!kernel || !isBatchKernel(this.specs, kernel.name) || !status || !LIVE.has(status)) {
      this.present(null); // dead, restarting, disconnected: shown again once it is back
      return;
    }
    if (this.job?.kernel_id === kernel.id) {
      return; // known: every cell run is a status change, the refresh timer keeps it current
    }
    void this.ask(kernel.id);
  }

  private async ask(kernelId: string): Promise<void> {
    const asked = ++this.asked;
    this.askedAt = Date.now();
    window.clearTimeout(this.refreshTimer);
    let job: IKernelJob | null = null;
    try {
      const jobs = await fetchKernelJobs();
      job = jobs.find(j => j.kernel_id === kernelId && j.state === 'RUNNING' && !j.ended) ?? null;
    } catch {
      job = null; // no such route (another server): nothing to show
    }
    if (asked !== this.asked) {
      return; // a newer question is under way
    }
    this.present(job);
    if (job) {
      this.refreshTimer = window.setTimeout(() => void this.ask(kernelId), REFRESH_MS);
    }
  }

  private present(job: IKernelJob | null): void {
    const was = this.active;
    this.job = job;
    window.clearInterval(this.tickTimer);
    if (!job) {
      window.clearTimeout(this.refreshTimer);
      this.asked++;
    } else {
      this.tickTimer = window.setInterval(() => this.update(), 1000);
    }
    this.update();
    if (this.active !== was) {
      this.activeSignal.emit();
    }
  }

  update(): void {
    const job = this.job;
    this.removeClass('jp-hpc-status-warn');
    this.removeClass('jp-hpc-status-critical');
    this.node.dataset.jobId = job?.job_id ?? '';
    if (!job) {
      this.node.textContent = '';
      delete this.node.dataset.remaining;
      return;
    }
    const where = job.node ? ` · ${job.node}` : '';
    const remaining = this.model.clock.secondsUntil(job.end_time);
    if (remaining === null) {
      this.node.textContent = `Kernel job ${job.job_id}${where}`;
      delete this.node.dataset.remaining;
      return;
    }
    if (remaining <= 0 && Date.now() - this.askedAt > ENDING_MS) {
      void this.ask(job.kernel_id); // past its end: is the job gone?
    }
    this.node.dataset.remaining = String(Math.floor(remaining));
    this.node.textContent = `Kernel job ${job.job_id}${where} · ${formatRemaining(remaining)} left`;
    const level = warningLevel(remaining, this.model.card?.walltime.warn_seconds ?? DEFAULT_WARN_SECONDS);
    if (level) {
      this.addClass(`jp-hpc-status-${level}`);
    }
  }

  dispose(): void {
    window.clearTimeout(this.refreshTimer);
    window.clearInterval(this.tickTimer);
    super.dispose();
  }
}
