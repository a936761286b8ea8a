// "New batch kernel…" (issue 16): a dialog for a kernelspec whose kernels run as batch jobs with the
// resources picked here. The server extension (POST <base_url>jupyterhub-hpc/kernels/specs)
// validates them into the spawner's job request: a refused field comes back with its message and
// the dialog opens again with the values kept. The new kernelspec is written into the user's
// Jupyter data dir; the kernelspecs are refreshed so that it is in the launcher at once.
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { ApiError } from './api';

export interface IBatchKernelRequest {
  display_name: string;
  partition: string;
  cpus: string;
  memory: string;
  walltime: string;
  gpus: string;
}

const FIELDS: [keyof IBatchKernelRequest, string, string][] = [
  ['display_name', 'Name', 'e.g. Python 3 (4 cores, 2 h)'],
  ['partition', 'Partition', "the site's default when empty"],
  ['cpus', 'CPUs', 'e.g. 4'],
  ['memory', 'Memory', 'e.g. 8G'],
  ['walltime', 'Walltime', 'HH:MM:SS, e.g. 02:00:00'],
  ['gpus', 'GPUs', 'e.g. 1']
];

export async function createBatchKernel(request: IBatchKernelRequest): Promise<{ name: string; display_name: string }> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'jupyterhub-hpc', 'kernels', 'specs');
  const body: { [key: string]: string } = {};
  for (const [key, value] of Object.entries(request)) {
    if (value.trim()) {
      body[key] = value.trim();
    }
  }
  const init = { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } };
  const response = await ServerConnection.makeRequest(url, init, settings);
  if (!response.ok) {
    let message = response.statusText;
    try {
      const answer = await response.json();
      message = answer.error ?? answer.message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, message);
  }
  return response.json();
}

class BatchKernelForm extends Widget {
  constructor(values: IBatchKernelRequest, error: string) {
    super();
    this.addClass('jp-hpc-batch-kernel-form');
    if (error) {
      const p = document.createElement('p');
      p.className = 'jp-hpc-batch-kernel-error';
      p.textContent = error;
      this.node.append(p);
    }
    for (const [key, label, hint] of FIELDS) {
      const row = document.createElement('label');
      row.textContent = label;
      const input = document.createElement('input');
      input.className = 'jp-mod-styled';
      input.name = key;
      input.placeholder = hint;
      input.value = values[key];
      row.append(input);
      this.node.append(row);
    }
  }

  getValue(): IBatchKernelRequest {
    const value = (key: string): string =>
      (this.node.querySelector(`input[name="${key}"]`) as HTMLInputElement | null)?.value ?? '';
    return {
      display_name: value('display_name'),
      partition: value('partition'),
      cpus: value('cpus'),
      memory: value('memory'),
      walltime: value('walltime'),
      gpus: value('gpus')
    };
  }
}

/** The dialog until a kernelspec is made or the user cancels; ``refresh`` reloads the kernelspecs. */
export async function newBatchKernel(refresh: () => Promise<void>): Promise<void> {
  let values: IBatchKernelRequest = { display_name: '', partition: '', cpus: '', memory: '', walltime: '', gpus: '' };
  let error = '';
  for (;;) {
    const result = await showDialog({
      title: 'New batch kernel',
      body: new BatchKernelForm(values, error),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Create' })]
    });
    if (!result.button.accept || !result.value) {
      return;
    }
    values = result.value;
    try {
      const spec = await createBatchKernel(values);
      await refresh();
      Notification.success(`Batch kernel “${spec.display_name}” created: it is in the launcher.`, { autoClose: 8000 });
      return;
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    }
  }
}
