// "New batch kernel…" (issue 16): a dialog for a kernelspec whose kernels run as batch jobs with the
// resources picked here, within one of the site's profiles when the hub has them (a Profile
// select; the fields say what the profile allows, a field it sets or does not offer is locked). The server extension (POST <base_url>jupyterhub-hpc/kernels/specs)
// validates them into the spawner's job request: a refused field comes back with its message and
// the dialog opens again with the values kept. The new kernelspec is written into the user's
// Jupyter data dir; the kernelspecs are refreshed so that it is in the launcher at once.
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { request } from './api';

export interface IBatchKernelRequest {
  display_name: string;
  /** the site's profile the kernel is made within ('' outside a hub with profiles) */
  profile?: string;
  partition: string;
  cpus: string;
  memory: string;
  walltime: string;
  gpus: string;
}

/** One kernel field of a profile (GET jupyterhub-hpc/kernels/profiles, profiles/kernelrequest.py). */
export interface IProfileField {
  fixed?: string | number;
  option?: string;
  default?: string | number | null;
  choices?: string[];
  min?: string | number | null;
  max?: string | number | null;
  free?: boolean;
}

export interface IKernelProfile {
  slug: string;
  display_name: string;
  description?: string;
  default: boolean;
  unavailable: string | null;
  fields: { [field: string]: IProfileField };
}

export async function fetchKernelProfiles(): Promise<IKernelProfile[]> {
  try {
    const body = await (await request('kernels/profiles')).json();
    return Array.isArray(body.profiles) ? body.profiles : [];
  } catch {
    return []; // no hub with profiles (404), or another server: the dialog without profiles
  }
}

/** What the dialog says of a field within a profile: [value to show, hint, editable]. */
export function fieldHint(field: IProfileField | undefined, hint: string): [string, string, boolean] {
  if (field === undefined) {
    return ['', 'not offered by this profile', false];
  }
  if (field.fixed !== undefined) {
    return [String(field.fixed), 'set by the profile', false];
  }
  const dflt = field.default === null || field.default === undefined ? '' : ` (default ${field.default})`;
  if (field.choices?.length) {
    return ['', `one of ${field.choices.join(', ')}${dflt}`, true];
  }
  if (field.min !== undefined || field.max !== undefined) {
    const low = field.min ?? '';
    const high = field.max ?? '';
    return ['', `${low}–${high}${dflt}`, true];
  }
  return ['', `${hint}${dflt}`, true];
}

const FIELDS: [keyof IBatchKernelRequest, string, string][] = [
  ['display_name', 'Name', 'e.g. Python 3 (4 cores, 2 h)'],
  ['partition', 'Partition', "the site's default when empty"],
  ['cpus', 'CPUs', 'e.g. 4'],
  ['memory', 'Memory', 'e.g. 8G'],
  ['walltime', 'Walltime', 'HH:MM:SS, e.g. 02:00:00'],
  ['gpus', 'GPUs', 'e.g. 1']
];

export async function createBatchKernel(request_: IBatchKernelRequest): Promise<{ name: string; display_name: string }> {
  const body: { [key: string]: string } = {};
  for (const [key, value] of Object.entries(request_)) {
    if (typeof value === 'string' && value.trim()) {
      body[key] = value.trim();
    }
  }
  const init = { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } };
  return (await request('kernels/specs', init)).json();
}

class BatchKernelForm extends Widget {
  constructor(
    values: IBatchKernelRequest,
    error: string,
    private readonly profiles: IKernelProfile[]
  ) {
    super();
    this.addClass('jp-hpc-batch-kernel-form');
    if (error) {
      const p = document.createElement('p');
      p.className = 'jp-hpc-batch-kernel-error';
      p.textContent = error;
      this.node.append(p);
    }
    if (profiles.length) {
      const row = document.createElement('label');
      row.textContent = 'Profile';
      const select = document.createElement('select');
      select.className = 'jp-mod-styled';
      select.name = 'profile';
      for (const profile of profiles) {
        const option = document.createElement('option');
        option.value = profile.slug;
        option.textContent = profile.unavailable
          ? `${profile.display_name} (not available now)`
          : profile.display_name;
        option.selected = values.profile ? values.profile === profile.slug : profile.default;
        select.append(option);
      }
      select.addEventListener('change', () => this.applyProfile());
      row.append(select);
      this.node.append(row);
    }
    for (const [key, label, hint] of FIELDS) {
      const row = document.createElement('label');
      row.textContent = label;
      const input = document.createElement('input');
      input.className = 'jp-mod-styled';
      input.name = key;
      input.placeholder = hint;
      input.dataset.hint = hint;
      input.value = String(values[key] ?? '');
      row.append(input);
      this.node.append(row);
    }
    this.applyProfile(true);
  }

  private chosen(): IKernelProfile | undefined {
    const select = this.node.querySelector('select[name="profile"]') as HTMLSelectElement | null;
    return this.profiles.find(p => p.slug === select?.value);
  }

  /** The chosen profile's rules as the fields' hints; a field it sets or does not offer is locked. */
  private applyProfile(keep = false): void {
    const profile = this.chosen();
    if (!profile) {
      return;
    }
    for (const [key] of FIELDS) {
      if (key === 'display_name') {
        continue;
      }
      const input = this.node.querySelector(`input[name="${key}"]`) as HTMLInputElement | null;
      if (!input) {
        continue;
      }
      const [value, hint, editable] = fieldHint(profile.fields[key], input.dataset.hint ?? '');
      input.placeholder = hint;
      input.disabled = !editable;
      if (!editable || !keep) {
        input.value = editable ? '' : value;
      }
    }
  }

  getValue(): IBatchKernelRequest {
    const input = (key: string): HTMLInputElement | null =>
      this.node.querySelector(`input[name="${key}"]`) as HTMLInputElement | null;
    // a locked field is the profile's: not sent (the hub fills it in)
    const value = (key: string): string => (input(key)?.disabled ? '' : input(key)?.value ?? '');
    const request: IBatchKernelRequest = {
      display_name: input('display_name')?.value ?? '',
      partition: value('partition'),
      cpus: value('cpus'),
      memory: value('memory'),
      walltime: value('walltime'),
      gpus: value('gpus')
    };
    const profile = this.chosen();
    if (profile) {
      request.profile = profile.slug;
    }
    return request;
  }
}

/** The dialog until a kernelspec is made or the user cancels; ``refresh`` reloads the kernelspecs. */
export async function newBatchKernel(refresh: () => Promise<void>): Promise<void> {
  let values: IBatchKernelRequest = { display_name: '', partition: '', cpus: '', memory: '', walltime: '', gpus: '' };
  let error = '';
  const profiles = await fetchKernelProfiles();
  for (;;) {
    const result = await showDialog({
      title: 'New batch kernel',
      body: new BatchKernelForm(values, error, profiles),
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
