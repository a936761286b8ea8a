// The server extension's modules routes (issue 15, docs/lab.md): under <base_url>jupyterhub-hpc/modules.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ApiError } from './api';

export interface IModule {
  name: string;
  package: string;
  version: string;
  default: boolean;
  description: string;
  family: string | null;
}

export interface IKernelSpecInfo {
  name: string;
  display_name: string;
  modules: string[];
  purge: boolean;
  kind: 'preset' | 'user';
}

export interface IRunningKernel {
  id: string;
  kernelspec: string;
  display_name: string;
  execution_state: string | null;
  modules: string[];
  loaded: string[];
  ok: boolean | null;
}

export interface IFailure {
  kernel_id: string;
  running: boolean;
  modules: string[];
  message: string;
  time: number;
}

export interface IModuleSet {
  modules: string[];
  purge: boolean;
}

export interface IStatus {
  running: IRunningKernel[];
  failures: IFailure[];
}

export interface IModulesInfo extends IStatus {
  available: boolean;
  error?: string;
  system?: string;
  cluster?: string;
  catalogue?: IModule[];
  /** the hub could not read the cluster's catalogue (it may be empty or old) */
  catalogue_error?: string | null;
  server: { modules: string[]; sticky: string[]; purge: boolean };
  kernelspecs: IKernelSpecInfo[];
  collections: { [name: string]: IModuleSet };
}

const settings = ServerConnection.makeSettings();

async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const url = URLExt.join(settings.baseUrl, 'jupyterhub-hpc', 'modules', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  if (!response.ok) {
    let message = response.statusText;
    try {
      const body = await response.json();
      message = body.error ?? body.message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

function send(method: string, body: unknown): RequestInit {
  return { method, body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } };
}

export async function fetchModules(): Promise<IModulesInfo> {
  return (await request('')).json();
}

/** The running kernels and the failed loads (polled: not the user's activity). */
export async function fetchStatus(): Promise<IStatus> {
  return (await request('status?no_track_activity=1')).json();
}

export async function createKernel(displayName: string, set: IModuleSet): Promise<IKernelSpecInfo> {
  return (await request('kernels', send('POST', { display_name: displayName, ...set }))).json();
}

export async function updateKernel(
  name: string,
  displayName: string,
  set: IModuleSet
): Promise<IKernelSpecInfo & { restarted: string[] }> {
  const path = `kernels/${encodeURIComponent(name)}`;
  return (await request(path, send('PUT', { display_name: displayName, ...set }))).json();
}

export async function deleteKernel(name: string): Promise<void> {
  await request(`kernels/${encodeURIComponent(name)}`, { method: 'DELETE' });
}

export async function saveCollection(name: string, set: IModuleSet): Promise<void> {
  await request(`collections/${encodeURIComponent(name)}`, send('PUT', set));
}

export async function deleteCollection(name: string): Promise<void> {
  await request(`collections/${encodeURIComponent(name)}`, { method: 'DELETE' });
}
